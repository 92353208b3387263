#!/usr/bin/env python3
"""fedhubctl against a running hub: every command, as a table and as --json.
status, links (a component and an inbound s2s link from a scripted remote
server with dialback), components, close ID, resolve (a served domain, a
static route, a DNS name the test's DNS server does not answer), reload,
config check (a good file, then a broken one: refused, nothing applied), the
socket's mode, and drain last (the hub then exits 0)."""
import json, os, re, signal, socket, stat, subprocess, sys, tempfile, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from fakepeer import Component, RemoteServer
from hubproc import FEDHUB, ROOT, Results, health, hub_section

CTL = os.environ.get("FEDHUBCTL", os.path.join(ROOT, "fedhubctl"))
S2S, COMP, HTTP, REMOTE = 27569, 27647, 27580, 27570
CONF = hub_section(S2S, COMP, HTTP, dns=27653) + """control_socket %s
drain_timeout 5
[domain local.fake]
[component a.fake]
secret s3cret
[component b.fake]
secret s3cret
[route remote.fake]
connect 127.0.0.1:%d
"""
T = Results()
check = T.check


def ctl(sock, *args, json_out=False):
    cmd = [CTL, "-s", sock] + (["--json"] if json_out else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if json_out:
        try:
            return p.returncode, json.loads(p.stdout if p.returncode == 0 else p.stderr), p
        except ValueError:
            return p.returncode, None, p
    return p.returncode, p.stdout + p.stderr, p


def main():
    timer = threading.Timer(55, lambda: os._exit(3))
    timer.daemon = True
    timer.start()
    tmp = tempfile.mkdtemp(prefix="fedhub-ctl-")
    sock = tmp + "/ctl.sock"
    conf = tmp + "/hub.conf"
    open(conf, "w").write(CONF % (sock, REMOTE))
    logp = tmp + "/hub.log"
    hub = subprocess.Popen([FEDHUB, "-c", conf], stderr=open(logp, "w"), stdout=subprocess.DEVNULL)
    rs = None
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        st = os.stat(sock)
        check("socket_mode_0660", stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660,
              oct(st.st_mode))

        rc, out, _ = ctl(sock, "status")
        check("status_table", rc == 0 and re.search(r"^state\s+ok$", out, re.M) and "components   2" in out, out)
        rc, js, _ = ctl(sock, "status", json_out=True)
        check("status_json", rc == 0 and js and js["health"]["status"] == "ok" and js["components"] == 2
              and js["domains"] == 1 and js["routes"] == 1, js)

        a = Component(COMP, "a.fake", "s3cret")
        rs = RemoteServer("remote.fake", REMOTE)
        link = rs.connect_out(S2S, "local.fake")
        res = link.auth("local.fake")
        check("remote_link_authenticated", res == "valid", res)
        rc, out, _ = ctl(sock, "links")
        check("links_table", rc == 0 and re.search(r"\bin\s+remote\.fake\s+local\.fake\s+valid\s+none\b", out)
              and re.search(r"\bcomponent\s+-?\s*\S*\s*a\.fake\s+handshake", out), out)
        rc, js, _ = ctl(sock, "links", json_out=True)
        ins = [l for l in (js or []) if l["direction"] == "in"]
        comps = [l for l in (js or []) if l["direction"] == "component"]
        check("links_json", rc == 0 and len(ins) == 1 and ins[0]["remote"] == ["remote.fake"]
              and ins[0]["local"] == ["local.fake"] and ins[0]["auth"] == "valid" and ins[0]["tls"] == "none"
              and isinstance(ins[0]["queue_bytes"], int) and isinstance(ins[0]["age_s"], int)
              and len(comps) == 1 and comps[0]["local"] == ["a.fake"], js)

        rc, out, _ = ctl(sock, "components")
        check("components_table", rc == 0 and re.search(r"^a\.fake\s+1$", out, re.M)
              and re.search(r"^b\.fake\s+0$", out, re.M), out)
        rc, js, _ = ctl(sock, "components", json_out=True)
        names = {c["name"]: c["connections"] for c in (js or {}).get("components", [])}
        check("components_json", rc == 0 and names == {"a.fake": 1, "b.fake": 0} and len(js["links"]) == 1, js)

        rc, out, _ = ctl(sock, "resolve", "a.fake")
        check("resolve_local_table", rc == 0 and "a component, served by this hub" in out, out)
        rc, js, _ = ctl(sock, "resolve", "remote.fake", json_out=True)
        check("resolve_static_route_json", rc == 0 and js and js["source"] == "static route"
              and js["targets"][0]["address"] == "127.0.0.1:%d" % REMOTE, js)
        rc, out, _ = ctl(sock, "resolve", "remote.fake")
        check("resolve_static_route_table", rc == 0 and "127.0.0.1:%d starttls" % REMOTE in out, out)
        rc, out, _ = ctl(sock, "resolve", "nowhere.fake")
        check("resolve_dns_failure_table", rc == 1 and "nowhere.fake: DNS" in out and "no targets" in out, out)
        rc, js, _ = ctl(sock, "resolve", "nowhere.fake", json_out=True)
        check("resolve_dns_failure_json", rc == 1 and js and js["source"] == "dns" and js["targets"] == []
              and js["status"] != "ok", js)

        rc, out, _ = ctl(sock, "config", "check")
        check("config_check_table", rc == 0 and out.strip().endswith(": ok"), out)
        rc, js, _ = ctl(sock, "reload", json_out=True)
        check("reload_json", rc == 0 and js and js["ok"] and any("nothing changed" in m for m in js["messages"]), js)
        open(conf, "a").write("[component c.fake]\nsecret x\n")
        rc, out, _ = ctl(sock, "reload")
        check("reload_table", rc == 0 and "components added: c.fake" in out and "reload: ok" in out, out)
        open(conf, "a").write("not_a_directive\n")
        rc, js, _ = ctl(sock, "config", "check", json_out=True)
        check("config_check_json_refuses_bad_file", rc == 1 and js and not js["ok"]
              and any("not_a_directive" in m for m in js["messages"]), js)
        rc, out, _ = ctl(sock, "reload")
        check("reload_bad_file_refused", rc == 1 and "refused" in out, out)
        rc, js, _ = ctl(sock, "status", json_out=True)
        check("status_counts_reloads", js and js["reloads"] == 2 and js["reloads_refused"] == 1
              and js["components"] == 3, js)

        rc, js, _ = ctl(sock, "links", json_out=True)
        lid = [l["id"] for l in (js or []) if l["direction"] == "in"]
        rc, out, _ = ctl(sock, "close", str(lid[0]) if lid else "0")
        closed = False
        try:
            while True:
                link.recv(3)
        except EOFError:
            closed = True
        except OSError:
            closed = False
        check("close_table_closes_link", rc == 0 and "closed" in out and closed, out)
        rc, js, _ = ctl(sock, "close", "999999", json_out=True)
        check("close_json_unknown_id", rc == 1 and js == {"id": 999999, "closed": False}, js)
        rc, out, _ = ctl(sock, "frobnicate")
        check("unknown_command_refused", rc == 1 and "commands:" in out, out)

        # a component that keeps talking is not idle: the drain waits for it
        stop_ka = threading.Event()
        threading.Thread(target=lambda: [a.send(" ") or time.sleep(0.2) for _ in iter(stop_ka.is_set, True)],
                         daemon=True).start()
        time.sleep(0.3)
        rc, js, _ = ctl(sock, "drain", json_out=True)
        check("drain_json", rc == 0 and js == {"draining": True}, js)
        time.sleep(0.2)
        code, body = health(HTTP)
        rc2, out2, _ = ctl(sock, "status")
        check("drain_health_503_and_status", code == 503 and body["reason"] == "fedhubctl drain"
              and re.search(r"^state\s+draining$", out2, re.M), (code, body, out2))
        try:
            rc = hub.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        stop_ka.set()
        check("drain_exits_0", rc == 0, rc)
        check("socket_removed_at_exit", not os.path.exists(sock))
    except Exception as e:
        import traceback
        traceback.print_exc()
        check("ctl_case", False, repr(e))
    finally:
        if rs:
            rs.close()
        if hub.poll() is None:
            hub.kill()
            hub.wait()
    T.exit()


if __name__ == "__main__":
    main()
