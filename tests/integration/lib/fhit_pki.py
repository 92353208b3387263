"""fhit_pki: a throw-away certificate authority for the TLS tests."""

import concurrent.futures
import itertools
import os
import subprocess


class PKI:
    """A throw-away CA in DIR/pki and leaf certificates it signs: SAN dNSName
    for each of the leaf's domains, EKU serverAuth + clientAuth (an s2s peer
    is both). All leaves share one EC key: each certificate costs one openssl
    run, so a few hundred are made in seconds."""

    def __init__(self, where):
        """where: a Harness, or a directory (the PKI goes in its pki/)."""
        self.dir = where.path("pki") if hasattr(where, "path") else os.path.join(where, "pki")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.ca = os.path.join(self.dir, "ca.pem")
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.key = os.path.join(self.dir, "leaf.key")
        self._csr = os.path.join(self.dir, "leaf.csr")
        self._serial = itertools.count(2)   # next() is atomic under the GIL: leaf() runs in threads
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", self.ca_key, "-out", self.ca, "-days", "2", "-subj", "/CN=fhit test CA",
                  "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", self.key, "-out", self._csr, "-subj", "/CN=fhit leaf")
        # Peers running as their own user (ejabberd) read copies; these are test keys.
        os.chmod(self.key, 0o644)

    @staticmethod
    def _run(*args):
        r = subprocess.run(("openssl",) + args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (args[0], r.stderr.strip()))

    def leaf(self, name, sans):
        """Signs NAME.crt for the domains sans (subject CN = the first one).
        Returns (cert path, key path)."""
        crt = os.path.join(self.dir, name + ".crt")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n"
                    % ",".join("DNS:" + d for d in sans))
        self._run("x509", "-req", "-in", self._csr, "-subj", "/CN=" + sans[0], "-CA", self.ca, "-CAkey", self.ca_key,
                  "-set_serial", str(next(self._serial)), "-days", "2", "-extfile", ext, "-out", crt)
        return crt, self.key

    def leaves(self, specs, jobs=3):
        """leaf() for each (name, sans) in specs, jobs openssl runs at a time.
        Returns [(cert, key)] in the order of specs."""
        with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
            return list(ex.map(lambda nv: self.leaf(*nv), specs))

    def cert(self, name):
        """The certificate file of the leaf made as NAME."""
        return os.path.join(self.dir, name + ".crt")

    def client_context(self, cert=None):
        """A TLS client context trusting the CA, presenting leaf cert if given."""
        import ssl
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.load_verify_locations(self.ca)
        if cert:
            c.load_cert_chain(self.cert(cert), self.key)
        return c

    def server_context(self, cert):
        """A TLS server context presenting leaf cert, asking for (and
        verifying, when sent) the client's certificate."""
        import ssl
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.load_verify_locations(self.ca)
        c.load_cert_chain(self.cert(cert), self.key)
        c.verify_mode = ssl.CERT_OPTIONAL
        return c

    def combined(self, name, sans):
        """Like leaf(), plus NAME.pem holding the certificate and the key (ejabberd's certfiles)."""
        crt, key = self.leaf(name, sans)
        pem = os.path.join(self.dir, name + ".pem")
        with open(pem, "w") as out, open(crt) as c, open(key) as k:
            out.write(c.read() + k.read())
        os.chmod(pem, 0o644)
        return pem
