-- Prosody 0.12 as a backend behind fedhub: the global settings that differ
-- from a Prosody federating on its own. Put them in the global section
-- (before the first VirtualHost line); a later assignment of the same option
-- wins. See README.md, "Fronting your XMPP servers".
--
-- tests/integration/t_backend_interop.py runs an unmodified Debian Prosody with this
-- file, replacing only the addresses, the port and the resolv.conf path, so
-- what is written here is what is tested.

-- Outbound: every s2s connection goes to fedhub. Prosody finds a remote
-- server by its _xmpp-server._tcp SRV record (then the domain's A/AAAA on
-- port 5269), looked up with libunbound (package lua-unbound). Point it at a
-- split-horizon DNS server that answers those records, for every remote
-- domain, with fedhub's internal s2s listener. A resolv.conf holds no port:
-- that server listens on port 53. Prosody 0.12 has no static s2s route of its
-- own, so this is the way to point it at the hub.
unbound = { resolvconf = "/etc/prosody/fedhub-resolv.conf" }

-- The internal link is authenticated with dialback in both directions:
-- Prosody proves its domains to fedhub, and fedhub answers as the remote
-- domain for the keys it issued (it authenticated the remote itself, over
-- TLS, with the certificates it holds). fedhub does not hold the remote
-- domains' certificates, so Prosody must not insist on one: keep "dialback"
-- in modules_enabled (Debian's default list has it) and switch off the
-- certificate requirements here. Protect the link by the network instead:
-- only fedhub may reach this port, and fedhub accepts streams for remote
-- domains only from the addresses in its [backend] allow_from.
s2s_require_encryption = false
s2s_secure_auth = false

-- Listen for s2s only where fedhub reaches Prosody: the address in the
-- [backend] section's connect line.
s2s_interfaces = { "10.0.0.5" }
s2s_ports = { 5269 }
