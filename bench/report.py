#!/usr/bin/env python3
"""bench/report.py — write BENCHMARKS.md from the results of bench/run-suite.sh.

Usage: report.py RESULTS_DIR OUTPUT.md

RESULTS_DIR holds, per step NAME: NAME.cmd (the exact command), NAME.rc (its
exit status), NAME.txt (its text report) and, for the load scenarios,
NAME.json (fedhub-bench --json). A step without results is listed as skipped
with the reason, never left out silently.
"""
import datetime
import json
import os
import platform
import sys

res, out_path = sys.argv[1], sys.argv[2]


def read(name, ext):
    try:
        with open(os.path.join(res, f"{name}.{ext}")) as f:
            return f.read()
    except OSError:
        return None


def load(name):
    t = read(name, "json")
    try:
        return json.loads(t) if t else None
    except ValueError:
        return None


def machine():
    for n in ("compare", "s2s-component", "s2s-component-tls", "idle-links", "echo-max", "echo-half", "sweep",
              "burst", "stall", "many-domains"):
        d = load(n)
        if d:
            return d["machine"]
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release()}


def command(name):
    c = (read(name, "cmd") or "").strip()
    return c.replace("./fedhub-bench", "fedhub-bench", 1)


def status(name):
    rc = (read(name, "rc") or "").strip()
    if rc == "":
        return "not run"
    if rc == "0":
        return "clean (nothing lost, nothing out of order)"
    if rc == "1" and name.startswith("stall"):
        return "**stanzas lost or out of order, or bounced before stall_timeout** (exit 1)"
    if rc == "1" and name == "many-domains":
        return "**remote domains failed to come up, or stanzas were lost** (exit 1)"
    if rc == "1":
        return "**stanzas lost or out of order** (exit 1)"
    if rc == "124":
        return "**timed out**"
    return f"**failed** (exit {rc})"


def skipped_reason(name):
    t = read(name, "skip")
    if t:
        return t.strip()
    log = (read(name, "log") or "").strip().splitlines()
    errs = [l for l in log if "error" in l or "skipped" in l or "fedhub-bench:" in l]
    return (errs[-1] if errs else (log[-1] if log else "no result")).strip()


def cell(text):
    """A reason quoted so that markup characters in it stay inert in a table."""
    return "`" + text.replace("`", "'").replace("|", "/") + "`"


def ms(us):
    return f"{us / 1000:.3f}"


def skipped_row(lead, why, blanks):
    """A row for what was not measured: the lead cells, the reason, `blanks` empty cells."""
    return f"| {lead} | skipped: {cell(why)} |" + " |" * blanks


def target_rows(d, blanks, row):
    """One row per target: row(name, t), or the reason it was skipped."""
    return [skipped_row(name, t["skipped"], blanks) if "skipped" in t else row(name, t)
            for name, t in d["targets"].items()]


def load_table(d, with_ratio):
    rows = [
        "| target | stanzas/s | target CPU us/stanza | p50 ms | p99 ms | p99.9 ms | RSS MiB | sent | delivered | bounced | lost | out of order |"
        + (" rate vs fedhub | CPU/stanza vs fedhub |" if with_ratio else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if with_ratio else ""),
    ]
    ref = d["targets"].get("fedhub")
    if ref and ("skipped" in ref or not ref.get("stanzas_per_s")):
        ref = None
    def row(name, t):
        r = (
            f"| {name} | {t['stanzas_per_s']:.0f} | {t['cpu_us_per_stanza']:.2f} | {ms(t['p50_us'])} | "
            f"{ms(t['p99_us'])} | {ms(t['p999_us'])} | {t['rss_kib'] / 1024:.1f} | {t['sent']} | "
            f"{t['delivered']} | {t['bounced']} | {t['lost']} | {t['out_of_order']} |"
        )
        if with_ratio:
            if ref and t["stanzas_per_s"] and t["cpu_us_per_stanza"] and ref["cpu_us_per_stanza"]:
                r += (f" {t['stanzas_per_s'] / ref['stanzas_per_s']:.2f}x |"
                      f" {t['cpu_us_per_stanza'] / ref['cpu_us_per_stanza']:.2f}x |")
            else:
                r += " n/a | n/a |"
        return r
    rows += target_rows(d, 11 + (2 if with_ratio else 0), row)
    return "\n".join(rows)


def tls_table(d):
    """load_table plus how the links were secured and authenticated."""
    out = [load_table(d, False)]
    for name, t in d["targets"].items():
        if "tls" not in t:
            continue
        line = (f"{name}: {t['tls']}; the bench's links to {name}: {t['tls_links_out']}/{t['links']} TLS,"
                f" {t['external_out']} by SASL EXTERNAL; {name}'s links to the bench:"
                f" {t['tls_links_in']} TLS, {t['external_in']} by SASL EXTERNAL")
        if t.get("plain_verify_in"):
            line += (f"; {t['plain_verify_in']} dialback verification(s) from {name} skipped the"
                     " STARTTLS the bench requires")
        out += ["", line + "."]
    return "\n".join(out)


def idle_table(d):
    rows = [
        "| target | links up | setup s | links/s | RSS before MiB | RSS with links MiB | KiB per link | idle CPU % of a core | alive at the end (delivered/sent) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    def row(name, t):
        up = t["links_up"]
        per = (t["rss_kib"] - t["rss_before_kib"]) / up if up else 0
        rate = up / t["setup_s"] if t["setup_s"] else 0
        cpu = 100 * t["target_cpu_s"] / t["measured_s"] if t["measured_s"] else 0
        return (f"| {name} | {up}/{t['links']} | {t['setup_s']:.2f} | {rate:.0f} | {t['rss_before_kib'] / 1024:.1f} | "
                f"{t['rss_kib'] / 1024:.1f} | {per:.1f} | {cpu:.2f} | {t['delivered']}/{t['sent']} |")
    return "\n".join(rows + target_rows(d, 7, row))


def errors(d):
    """What went wrong during a run that still measured something."""
    out = [f"- {n}: {cell(t['error'])}" for n, t in d.get("targets", {}).items() if t.get("error")]
    return ["", "Errors seen during the run:", ""] + out if out else []


def cluster_table(d):
    """bench/cluster-fwd.sh: a single hub (D) against two nodes (A forwards to B's component) and three behind
    HAProxy."""
    rows = ["| run | offered | delivered | stanzas/s | hub CPU us/stanza (per node = sum) | HAProxy CPU us/stanza |"
            " forwarded share | Redis ops/s per node | Redis server ops/s |",
            "|---|---:|---:|---:|---|---:|---:|---|---:|"]
    runs = {r["run"]: r for r in d["runs"]}
    for r in d["runs"]:
        ops = ", ".join(f"{x:.1f}" for x in r.get("redis_ops_per_s", []))
        srv = f"{r['redis_server_ops_per_s']:.1f}" if "redis_server_ops_per_s" in r else ""
        if r["run"] == "rest":
            rows.append(f"| two nodes at rest ({r['seconds']:.0f} s, no traffic) | 0 | | | | | | {ops} | {srv} |")
            continue
        cpu = r["cpu_us"]
        c = f"{cpu[0]:.3f}" if len(cpu) == 1 else " + ".join(f"{x:.3f}" for x in cpu) + f" = {sum(cpu):.3f}"
        offered = "burst (closed)" if r["rate"] == "burst" else f"{int(r['rate'])}/s"
        hap = f"{r['haproxy_cpu_us']:.3f}" if "haproxy_cpu_us" in r else ""
        share = f"{r['forwarded_share']:.2f}" if "forwarded_share" in r else ""
        rows.append(f"| {r['run']} | {offered} | {r['delivered']:.0f} | {r['stanzas_per_s']:.0f} | {c} | {hap} |"
                    f" {share} | {ops} | {srv} |")
    out = ["\n".join(rows), ""]
    for r in d["runs"]:
        if r["run"].startswith("direct-"):
            k = r["run"][len("direct-"):]
            at = "at the maximum (burst)" if r["rate"] == "burst" else f"at {int(r['rate'])}/s"
            for kind, what in (("forwarded", "two nodes, every stanza forwarded"),
                               ("haproxy", "three nodes behind HAProxy")):
                f = runs.get(f"{kind}-{k}")
                if f:
                    extra = sum(f["cpu_us"]) - r["cpu_us"][0]
                    per = (f", {extra / f['forwarded_share']:.3f} us per stanza forwarded"
                           if kind == "haproxy" and f.get("forwarded_share") else "")
                    out.append(f"- {what}, {at}: {extra:+.3f} us/stanza of hub CPU against the single hub{per};"
                               f" {f['stanzas_per_s'] / r['stanzas_per_s']:.2f}x its stanzas/s.")
    out.append(f"- Leases held at the end (A, B, C): {', '.join('%.0f' % x for x in d['leases_held'])}"
               " (the load has no outbound s2s traffic).")
    out.append(f"- Redis calls by command over the cluster's runs: {', '.join(d['commandstats'])}.")
    return "\n".join(out)


def section(title, name, body_fn, intro=""):
    s = [f"## {title}", ""]
    if intro:
        s += [intro, ""]
    s += ["```", command(name) or "(not run)", "```", "", f"Result: {status(name)}.", ""]
    d = load(name)
    if d is None:
        s += [f"Skipped: {skipped_reason(name)}", ""]
    else:
        s += [body_fn(d)] + errors(d) + [""]
    return s


def text_section(title, name, intro):
    """A benchmark whose own text report is the result."""
    s = [f"## {title}", "", intro, "", "```", command(name) or "(not run)", "```", ""]
    t = read(name, "txt")
    if t and (read(name, "rc") or "").strip() == "0":
        s += ["```", t.strip(), "```", ""]
    else:
        rc = (read(name, "rc") or "").strip()
        s += [f"Result: **failed** (exit {rc or 'not run'}).", "", f"Skipped: {skipped_reason(name)}", ""]
    return s


def tls_vs_plain():
    """fedhub's CPU per stanza with and without TLS, from the four s2s-component runs."""
    s = ["## TLS vs plaintext: fedhub CPU per stanza", "",
         "From the two runs above (closed loop, each at its own maximum; the bench, which"
         " encrypts too, is what limits both) and the same two commands open loop at one offered"
         " rate, a quarter of the lower of the two maxima: the same load for both, but at a fixed rate"
         " fedhub wakes for smaller batches, so its CPU per stanza is higher in both columns and"
         " noisier. The target: TLS adds at most 1 us of fedhub CPU per ~300-byte stanza"
         " (fedhub decrypts the s2s side here; the component side is plaintext). The TLS engine"
         " alone costs the bulk figure in 'TLS engine alone' for encrypt + decrypt.", ""]
    rows = [("closed loop", "s2s-component", "s2s-component-tls"),
            ("open loop, equal rate", "s2s-component-eq", "s2s-component-tls-eq")]
    table = ["| load | plaintext stanzas/s | TLS stanzas/s | plaintext us/stanza | TLS us/stanza |"
             " TLS adds us/stanza | TLS p99 ms (plaintext) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    adds = []
    for label, pn, tn in rows:
        p, t = load(pn), load(tn)
        p = p and p["targets"].get("fedhub")
        t = t and t["targets"].get("fedhub")
        if not p or not t or "skipped" in p or "skipped" in t or not p["cpu_us_per_stanza"] \
                or not t["cpu_us_per_stanza"]:
            why = read("s2s-component-eq", "skip") if pn == "s2s-component-eq" else None
            table.append(f"| {label} | not measured: {cell((why or 'a run failed, see above').strip())} | | | | | |")
            continue
        unclean = [f"{n} {x['lost']} lost, {x['bounced']} bounced" for n, x in (("plaintext", p), ("TLS", t))
                   if x["lost"] or x["bounced"]]
        if unclean:
            # an overloaded run's CPU per stanza measures the overload, not TLS
            table.append(f"| {label} | {p['stanzas_per_s']:.0f} | {t['stanzas_per_s']:.0f} | not comparable: "
                         f"{cell('; '.join(unclean))} | | | |")
            continue
        add = t["cpu_us_per_stanza"] - p["cpu_us_per_stanza"]
        adds.append((label, add))
        table.append(f"| {label} | {p['stanzas_per_s']:.0f} | {t['stanzas_per_s']:.0f} | "
                     f"{p['cpu_us_per_stanza']:.2f} | {t['cpu_us_per_stanza']:.2f} | {add:+.2f} | "
                     f"{ms(t['p99_us'])} ({ms(p['p99_us'])}) |")
    s += table + [""]
    if adds:
        ok = "within" if all(a <= 1.0 for _, a in adds) else "**over**"
        said = ", ".join(f"{a:+.2f} us ({label})" for label, a in adds)
        s += [f"TLS changes fedhub's CPU per stanza by {said}: {ok} the 1 us target.", ""]
    return s


def backend_vs_component():
    """The backend path's CPU per stanza against s2s -> component's (target: at most 1.2x), from
    back-to-back runs with the same links and domains: closed loop, then open loop at one rate."""
    s = ["## Backends: backend → hub → remote", "",
         "The bench plays a backend server behind fedhub and the remote servers at once"
         " (s2s-backend: remote -> fedhub -> backend and backend -> fedhub -> remote, half the"
         " stanzas each way; see 'fedhub: a backend behind the hub' above), against s2s -> component"
         " with the same 8 links and 32 domains and one component. Each pair of runs is back to"
         " back: closed loop (each at its own maximum), then open loop at 20,000 stanzas/s, each"
         " beside the bench's direct baseline: fedhub's share of the latency (router-added) is each"
         " percentile minus the direct run's (see 'Router-added latency' for the method). Target:"
         " the backend path costs at most 1.2x the hub CPU per stanza of s2s -> component.", ""]
    rows = [("closed loop (maximum)", "s2s-backend-comp", "s2s-backend"),
            ("open loop, 20,000/s", "s2s-component-20k", "s2s-backend-20k")]
    s += ["```"] + [command(n) or f"({n}: not run)" for _, cn, bn in rows for n in (cn, bn)] + ["```", ""]
    table = ["| load | component stanzas/s | backend stanzas/s | component us/stanza | backend us/stanza |"
             " backend / component | router-added p50 / p99 ms, component | backend |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    ratios = []
    for label, cn, bn in rows:
        dc, db = load(cn), load(bn)
        c = dc and dc["targets"].get("fedhub")
        b = db and db["targets"].get("fedhub")
        if not c or not b or "skipped" in c or "skipped" in b or not c["cpu_us_per_stanza"] \
                or not b["cpu_us_per_stanza"]:
            table.append(f"| {label} | not measured: {cell('a run failed or did not run, see above')} |"
                         " | | | | | |")
            continue
        ratio = b["cpu_us_per_stanza"] / c["cpu_us_per_stanza"]
        ratios.append((label, ratio))

        def added(d, x):
            y = d["targets"].get("direct")
            if not y or "skipped" in y:
                return "n/a (no direct run)"
            return f"{ms(x['p50_us'] - y['p50_us'])} / {ms(x['p99_us'] - y['p99_us'])}"
        table.append(f"| {label} | {c['stanzas_per_s']:.0f} | {b['stanzas_per_s']:.0f} |"
                     f" {c['cpu_us_per_stanza']:.2f} | {b['cpu_us_per_stanza']:.2f} | {ratio:.2f}x |"
                     f" {added(dc, c)} | {added(db, b)} |")
    s += table + [""]
    if ratios:
        ok = "within" if all(r <= 1.2 for _, r in ratios) else "**over**"
        said = ", ".join(f"{r:.2f}x ({label})" for label, r in ratios)
        s += [f"The backend path costs {said} the CPU per stanza of s2s -> component: {ok} the 1.2x target.", ""]
    return s


def conds(t):
    b = t.get("bounced_by") or {}
    return ", ".join(f"{k} {v}" for k, v in b.items()) or "-"


def many_tables(d):
    rows = {r["key"]: r for r in d.get("rows", [])}
    t = d["targets"]
    out = [f"Domains per link ({d['links']} links, closed loop, {d['seconds']:.0f} s each after"
           f" {d['warmup']:.0f} s warm-up; the target knows the bench's domains by static routes):", "",
           "| domains per link | domains | setup s | stanzas/s | fedhub CPU us/stanza | p50 ms | p99 ms | lost | result |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for k, r in rows.items():
        if r["kind"] != "per-link":
            continue
        x = t.get(k, {})
        if "skipped" in x:
            out.append(skipped_row(f"{r['per_link']} | {r['domains']}", x["skipped"], 6))
            continue
        res = "clean" if not x.get("lost") and not x.get("out_of_order") and not x.get("error") else \
            cell(x.get("error") or "stanzas lost or out of order")
        out.append(f"| {r['per_link']} | {r['domains']} | {x['setup_s']:.2f} | {x['stanzas_per_s']:.0f} | "
                   f"{x['cpu_us_per_stanza']:.2f} | {ms(x['p50_us'])} | {ms(x['p99_us'])} | {x['lost']} | {res} |")
    out += ["", f"New remote domains: one stanza from the component to each of N bench domains; fedhub finds"
            f" each domain (by DNS: {d.get('dns', 'dnsmasq')}; or by static routes), dials a link to the"
            f" bench's listener and authenticates it by dialback. 'all up' = first write to the last stanza"
            f" accounted; come-up = per domain, write to delivery. Hard fd limit: {d.get('nofile_hard')}"
            " (the bench raises its own to it; target.sh raises fedhub's). UDP drops = datagrams this host"
            " dropped for a full socket buffer during the run (/proc/net/snmp RcvbufErrors). KiB per domain ="
            " (fedhub's peak RSS - its RSS before the run) / N: an outbound link with its pair, its DNS"
            " answer or [route], and the bench's dialback verification stream into fedhub while it lasts.", "",
            "| remote domains | found by | all up s | come-up p50 ms | p99 ms | max ms | delivered | bounced (by condition) | lost | fedhub peak RSS MiB | KiB per domain | UDP drops |",
            "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for k, r in rows.items():
        if r["kind"] != "remote":
            continue
        x = t.get(k, {})
        how = "DNS" if r.get("dns") else "routes"
        if "skipped" in x:
            out.append(skipped_row(f"{r['domains']} | {how}", x["skipped"], 9))
            continue
        peak, before = x.get('peak_rss_kib', 0), x.get('rss_before_kib', 0)
        per = (peak - before) / r['domains'] if peak > before and r['domains'] else 0
        out.append(f"| {r['domains']} | {how} | {x['drain_s']:.2f} | {ms(x['p50_us'])} | {ms(x['p99_us'])} | "
                   f"{ms(x['max_us'])} | {x['delivered']} | {x['bounced']} ({conds(x)}) | {x['lost']} | "
                   f"{peak / 1024:.1f} | {per:.2f} | {x.get('udp_rcvbuf_drops', -1)} |")
    return "\n".join(out)


def burst_table(d):
    out = [f"{d['burst']} stanzas written at once over {d['links']} links; the component reads at most"
           f" {d['comp_read_rate']:.0f} stanzas/s and stops reading for {d['comp_pause_ms']} ms after every"
           f" {d['comp_pause_every']}. Drain = first write to the last stanza accounted (delivered or bounced"
           " back to its sender); latency from the write.", "",
           "| target | sent | delivered | bounced (by condition) | lost | out of order | drain s | p99 ms | target peak RSS MiB | target CPU us/stanza |",
           "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    out += target_rows(d, 8, lambda name, t: (
        f"| {name} | {t['sent']} | {t['delivered']} | {t['bounced']} ({conds(t)}) | {t['lost']} | "
        f"{t['out_of_order']} | {t['drain_s']:.2f} | {ms(t['p99_us'])} | "
        f"{t.get('peak_rss_kib', 0) / 1024:.1f} | {t['cpu_us_per_stanza']:.2f} |"))
    return "\n".join(out)


def stall_table(d):
    st = d.get("stall_timeout_s") or 0
    out = [f"Open loop at {d['rate']:.0f} stanzas/s over {d['links']} links to comp.fhb and comp2.fhb (half each);"
           f" comp.fhb stops reading for {d['stall_ms'] / 1000:.1f} s at the start of the measured window"
           + (f", fedhub's `stall_timeout` is {st} s" if st else "") + "."
           " Every stanza must be delivered or bounced (delivered + bounced == sent), and none bounced before"
           " `stall_timeout`: bounces are timed from the start of the stall. comp2.fhb's latency is counted"
           " over the stall.", "",
           "| target | sent | delivered | bounced (by condition) | lost | bounces s after the stall began | all p99 ms | comp2.fhb during the stall: delivered | p50 ms | p99 ms | p99.9 ms | max ms | peak RSS MiB |",
           "|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]

    def when(t):
        if not t["bounced"] or t.get("first_bounce_s", -1) < -0.5:
            return "-"
        return f"{t['first_bounce_s']:.2f} to {t['last_bounce_s']:.2f}"
    out += target_rows(d, 11, lambda name, t: (
        f"| {name} | {t['sent']} | {t['delivered']} | {t['bounced']} ({conds(t)}) | {t['lost']} | {when(t)} | "
        f"{ms(t['p99_us'])} | {t.get('other_delivered', 0)} | {ms(t.get('other_p50_us', 0))} | "
        f"{ms(t.get('other_p99_us', 0))} | {ms(t.get('other_p999_us', 0))} | "
        f"{ms(t.get('other_max_us', 0))} | {t.get('peak_rss_kib', 0) / 1024:.1f} |"))
    return "\n".join(out)


def sweep_table(d):
    rates, targets, cells = [], [], {}
    for key, t in d["targets"].items():
        name, _, rate = key.partition("@")
        if name not in targets:
            targets.append(name)
        if rate not in rates:
            rates.append(rate)
        cells[(name, rate)] = t
    hub = [n for n in targets if any("hub_lat" in cells.get((n, r), {}) for r in rates)]
    head = "| offered stanzas/s |" + "".join(f" {n} stanzas/s | {n} CPU us/stanza | {n} p50 ms | {n} p99 ms |"
                                            + (f" {n} in-hub p50 us | {n} in-hub p99 us |" if n in hub else "")
                                            for n in targets)
    out = ["Each rate against a freshly started target, open loop for the measured window (latency from the"
           " intended send time), `max` closed"
           " loop. CPU is the target process's; HAProxy relays bytes to the bench's far end (no XML work). A"
           " rate a target cannot keep up with shows as delivered stanzas/s below the offered rate and as"
           " latency growing with the backlog; `lost` there means not delivered within the 5 s drain.", "",
           "In-hub: fedhub's own histogram (`fedhub_router_latency_seconds` in /metrics, read at both ends of"
           " the measured window): per stanza, from the loop turn that received it to the one that handed it"
           " to the kernel, the upper bound of the bucket holding the percentile; the bench's own time and"
           " loopback TCP are not in it.", "",
           head, "|---:|" + "".join("---:|---:|---:|---:|" + ("---:|---:|" if n in hub else "") for n in targets)]
    for rate in rates:
        row = f"| {rate} |"
        for n in targets:
            t = cells.get((n, rate))
            if not t or "skipped" in t:
                row += f" skipped: {cell(t['skipped']) if t else 'not run'} | | | |" + (" | |" if n in hub else "")
                continue
            lost = f" ({t['lost']} lost)" if t["lost"] else ""
            row += (f" {t['stanzas_per_s']:.0f}{lost} | {t['cpu_us_per_stanza']:.2f} | {ms(t['p50_us'])} |"
                    f" {ms(t['p99_us'])} |")
            if n in hub:
                h = t.get("hub_lat")
                row += f" {h['p50_us']:.0f} | {h['p99_us']:.0f} |" if h else " | |"
        out.append(row)
    return "\n".join(out)


def latency_table(d):
    t = d["targets"]
    out = [load_table(d, False), ""]
    f, b = t.get("fedhub"), t.get("direct")
    h = f.get("hub_lat") if f and "skipped" not in f else None
    if h:
        out += ["fedhub's own histogram over the measured window (per stanza, upper bucket bounds):", "",
                "| stanzas | mean us | p50 us | p90 us | p99 us | p99.9 us |", "|---:|---:|---:|---:|---:|---:|",
                f"| {h['stanzas']} | {h['mean_us']:.1f} | {h['p50_us']:.0f} | {h['p90_us']:.0f} |"
                f" {h['p99_us']:.0f} | {h['p999_us']:.0f} |", "",
                f"At {d['rate']:.0f} stanzas/s offered ({f['stanzas_per_s']:.0f} delivered), a stanza spent at"
                f" most {h['p99_us']:.0f} us in fedhub at p99 ({h['p50_us']:.0f} us at p50).", "",
                "For comparison, the earlier method (the bench's end-to-end percentiles through fedhub minus"
                " those of the direct path):", ""]
    if not f or not b or "skipped" in f or "skipped" in b:
        return "\n".join(out + ["fedhub's share: not measured (a run was skipped)."])
    out += ["fedhub's share: each percentile of the fedhub path minus the same percentile of the direct"
            " path at the same offered rate.", "",
            "| | p50 ms | p90 ms | p99 ms | p99.9 ms |", "|---|---:|---:|---:|---:|"]
    for label, x in (("bench -> fedhub -> bench", f), ("bench -> bench (direct)", b)):
        out.append(f"| {label} | {ms(x['p50_us'])} | {ms(x['p90_us'])} | {ms(x['p99_us'])} | {ms(x['p999_us'])} |")
    diff = {k: f[k] - b[k] for k in ("p50_us", "p90_us", "p99_us", "p999_us")}
    out.append(f"| fedhub's share | {ms(diff['p50_us'])} | {ms(diff['p90_us'])} | {ms(diff['p99_us'])} |"
               f" {ms(diff['p999_us'])} |")
    h = t.get("haproxy")
    extra = ""
    if h and "skipped" not in h:
        extra = (f" For scale, HAProxy as a zero-logic relay on the same path adds"
                 f" {ms(h['p99_us'] - b['p99_us'])} ms at p99.")
    out += ["", f"At {d['rate']:.0f} stanzas/s (50% of fedhub's closed-loop maximum in the sweep), fedhub adds"
            f" {ms(diff['p99_us'])} ms at p99 to the path (p99 {ms(f['p99_us'])} ms through fedhub,"
            f" {ms(b['p99_us'])} ms direct).{extra}"]
    return "\n".join(out)


def latency_table_20k(d):
    """A run beside the direct baseline at the same rate: the table and fedhub's share of p50/p99."""
    t = d["targets"]
    out = [load_table(d, False), ""]
    f, b = t.get("fedhub"), t.get("direct")
    if not f or not b or "skipped" in f or "skipped" in b:
        return "\n".join(out + ["fedhub's share: not measured (a run was skipped)."])
    out.append(f"fedhub's share at {d['rate']:.0f} stanzas/s (fedhub minus direct): p50"
               f" {ms(f['p50_us'] - b['p50_us'])} ms, p90 {ms(f['p90_us'] - b['p90_us'])} ms,"
               f" p99 {ms(f['p99_us'] - b['p99_us'])} ms, p99.9 {ms(f['p999_us'] - b['p999_us'])} ms.")
    return "\n".join(out)


m = machine()
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def results_span():
    """' (results from runs between A and B)' when the results in res were
    written over more than ten minutes (steps run one at a time with ONLY=),
    else ''."""
    ts = [os.path.getmtime(os.path.join(res, f)) for f in os.listdir(res) if f.endswith(".json")]
    if not ts or max(ts) - min(ts) < 600:
        return ""
    fmt = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%H:%M")
    return " (results from runs between %s and %s UTC, steps run one at a time)" % (fmt(min(ts)), fmt(max(ts)))


L = [
    "# fedhub benchmarks",
    "",
    "Generated by `make bench` (bench/run-suite.sh, then bench/report.py); do not edit by hand.",
    "",
    f"- Date: {now}{results_span()}",
    f"- Machine: {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']}",
    "- Layout: fedhub-bench pinned to CPU 0, the target to the remaining CPUs (`taskset`),",
    "  everything on loopback, plaintext s2s authenticated by Server Dialback (XEP-0220)",
    "  unless a section says TLS, XEP-0114 components. Targets are started with the configs",
    "  in bench/peers/ (bench/peers/target.sh).",
    "- Target CPU is user+sys from /proc/PID/stat over the measured window (after warm-up),",
    "  divided by the stanzas delivered in that window; RSS is the largest VmRSS sampled in it.",
    "- Latency: send to final receipt, log-linear histogram (about 3% resolution). Closed loop",
    "  = a bounded window of stanzas in flight per link; open loop = a fixed offered rate with",
    "  latency counted from the intended send time (coordinated omission corrected).",
    "- Lost = sent - delivered - bounced after the drain; out of order = a stanza whose sequence",
    "  number is below one already received from the same (from, to) pair.",
    "",
    "## XML tokenizer",
    "",
    "```",
    command("tokenizer") or "(not run)",
    "```",
    "",
]
tok = read("tokenizer", "txt")
if tok and (read("tokenizer", "rc") or "").strip() == "0":
    L += ["```", tok.strip(), "```", ""]
else:
    L += [f"Skipped: {skipped_reason('tokenizer')}", ""]

L += text_section("TLS engine alone", "handshakes",
                  "net/tls.c driven in memory, one thread: full and resumed TLS 1.3 handshakes with"
                  " mutual certificate verification, bulk cost per 300-byte stanza, memory per idle link.")
L += text_section("Worker runtime alone", "relay",
                  "Bytes over loopback, sender -> sink directly and sender -> one fedhub worker -> sink"
                  " (received buffers forwarded as slices, as the router forwards stanzas).")
L += section("fedhub: s2s links to a component", "s2s-component", lambda d: load_table(d, False),
             "Remote servers (the bench) send over dialback-authenticated s2s links to comp.fhb,"
             " an external component (the bench); ~300-byte messages with some presence and iq.")
L += section("fedhub: s2s links to a component, TLS", "s2s-component-tls", tls_table,
             "The same, every s2s link with STARTTLS (RFC 6120 §5) and SASL EXTERNAL (XEP-0178) for"
             " its first domain, the other piggybacked domains by dialback trusted from the"
             " certificate (XEP-0344); a test CA (bench/peers/mkcerts.sh). The bench speaks TLS"
             " through fedhub's own engine (net/tls.h).")
L += tls_vs_plain()
L += section("fedhub: echo round trip, closed loop (maximum)", "echo-max", lambda d: load_table(d, False),
             "s2s -> fedhub -> component, echoed back -> fedhub -> s2s (the bench's dialback listener):"
             " a hub carrying traffic between remote servers through an internal service"
             " (`fedhub-bench transit` is this run).")
L += section("fedhub: echo round trip, TLS, closed loop (maximum)", "echo-tls", tls_table,
             "The same round trip with STARTTLS and SASL EXTERNAL on every s2s link: the bench's"
             " links to fedhub and fedhub's links to the bench's listener.")
if load("echo-half") is None and read("echo-half", "skip"):
    L += ["## fedhub: echo round trip at 50% of the maximum", "", f"Skipped: {read('echo-half', 'skip').strip()}", ""]
else:
    L += section("fedhub: echo round trip at 50% of the maximum (open loop)", "echo-half",
                 lambda d: load_table(d, False))
L += section("fedhub: a backend behind the hub (s2s-backend)", "s2s-backend", lambda d: load_table(d, False),
             "The bench plays an unmodified XMPP server behind fedhub (`[backend bench]`: domain back.fhb,"
             " connect and allow_from the bench's listener) and the remote servers at once. Remote ->"
             " fedhub -> backend: 8 dialback links from 32 remote domains to back.fhb, relayed over"
             " fedhub's internal links (one per fedhub worker, every remote domain's pairs piggybacked) to the backend; backend -> fedhub ->"
             " remote: 8 streams of the backend (from back.fhb, one per remote domain), which fedhub"
             " takes from the backend's address and sends out on its own links, authenticated as"
             " back.fhb. Half the stanzas go each way.")
L += section("fedhub: a backend behind the hub, 20,000/s", "s2s-backend-20k", latency_table_20k)
L += section("fedhub: s2s links to a component, 20,000/s", "s2s-component-20k", latency_table_20k)
L += backend_vs_component()
L += section("Idle links", "idle-links", idle_table,
             "Many authenticated s2s links held idle: memory per link, idle CPU, then one stanza per"
             " link to show every link still works.")
L += section("Idle TLS links", "idle-links-tls", idle_table,
             "fedhub alone, every link with STARTTLS and SASL EXTERNAL, one bench domain per link; the"
             " bench's certificates name 10 domains each (bench/peers/mkcerts.sh), as a server's"
             " certificate names its domain and a few more. KiB per link counts everything: socket"
             " buffers' bookkeeping, fedhub's connection state and wolfSSL's session.")
L += section("Side by side: s2s links to a component", "compare", lambda d: load_table(d, True),
             "The same scenario against each target. HAProxy relays the bench's byte stream in TCP"
             " mode to the bench's own far end: the 'no XML work' bound (it is limited by the bench"
             " itself, which parses every stanza). Prosody runs without mod_limits, ejabberd with"
             " shapers off and max_fsm_queue raised, so their routing is measured, not a shaper.")
L += section("Many domains", "many-domains", many_tables,
             "fedhub's cost as the domains grow: more domains piggybacked on each link (XEP-0220 §2.1,"
             " one dialback exchange per domain on the same stream), and many new remote domains at once"
             " (the bench plays every remote server; its listener is the authoritative server of all of"
             " them).")
L += section("Burst into a slow component", "burst", burst_table,
             "What flow control is for: links blast stanzas far faster than the component takes them."
             " Every stanza must come out delivered or bounced (with its condition counted); memory must"
             " stay bounded. Prosody and ejabberd run the same burst with their bench configs.")
L += section("Burst into a slow component, TLS", "burst-tls", burst_table,
             "The same burst against fedhub with every s2s link under STARTTLS and SASL EXTERNAL: a paused"
             " TLS link keeps ciphertext the engine has not taken yet, and must deliver it when resumed.")
L += section("A stalled component", "stall", stall_table,
             "One destination stops reading for less than `stall_timeout`; the other destination on the"
             " same links must keep flowing (head-of-line blocking shows as comp2.fhb's latency during the"
             " stall), and nothing may be bounced: the stall is shorter than the timeout.")
L += section("A stalled component, longer than stall_timeout", "stall-long", stall_table,
             "The same with a stall longer than a short `stall_timeout`: what waits for comp.fhb is"
             " bounced (`resource-constraint`) once its queue has made no progress for `stall_timeout`,"
             " and what is sent to it afterwards at once until it reads again; nothing earlier. comp2.fhb"
             " waits behind comp.fhb only once the links' allowance for comp.fhb is used up, at most"
             " `stall_timeout`.")
L += section("Rate sweep: s2s links to a component", "sweep", sweep_table)
if load("router-latency") is None and read("router-latency", "skip"):
    L += ["## Router-added latency", "", f"Skipped: {read('router-latency', 'skip').strip()}", ""]
else:
    L += section("Router-added latency", "router-latency", latency_table,
                 "Method: fedhub times every stanza it forwards, from the loop turn that handed the received"
                 " bytes to the router to the turn that handed them to the kernel for sending (no clock read"
                 " per stanza: each turn reads the clock once, and the receive buffer carries its turn's"
                 " time, across workers too), into the histogram `fedhub_router_latency_seconds` of its"
                 " /metrics; the bench reads it at both ends of the measured window. The ingress time is"
                 " never later than the bytes' arrival: a completion posted during a wait for a batch is"
                 " dated at the wait's start, one already pending at the previous turn's end at that end,"
                 " one that woke the worker at the wake-up (so the scheduler's wake-up latency is the one"
                 " delay not in it). The bench's own time (it parses every stanza) and loopback TCP are"
                 " excluded, whatever the bench's load. The run is at half of fedhub's closed-loop maximum"
                 " in the sweep; `direct` (the bench's links straight to its own far end) and HAProxy are"
                 " the end-to-end baselines of the older estimate, kept below.")

L += section("Cluster", "cluster", cluster_table,
             "bench/cluster-fwd.sh: one hub (D, one worker) against a two-node cluster (A and B, one worker"
             " each, a redis-server as the registry) with the component on B only, so every stanza takes"
             " the forwarded path: 4 dialback links -> A -> node link -> B -> component; then against"
             " three nodes (A, B, C) behind HAProxy (TCP mode, send-proxy-v2, round robin over the 4"
             " links), the component still on B, so the links that land on A or C forward. Each load runs"
             " against each layout: a burst (the maximum) and open loop at fixed rates. Hub CPU is"
             " user+sys of every hub process over the run (link set-up included) divided by the stanzas"
             " delivered. Redis ops/s: each node's fedhub_redis_commands_total, and the server's"
             " total_commands_processed (INFO stats, which also counts the commands the registry's"
             " scripts run inside Redis), over the run or over a window with no traffic. Forwarded"
             " share: the nodes' fedhub_cluster_forwarded_total{direction=\"out\"} over the stanzas"
             " delivered. On 2 cores shared by the bench, the hubs, Redis and HAProxy, stanzas/s shows"
             " contention, not scaling; CPU per stanza is the figure."
             " Exit status 0: nothing lost or out of order in any run.")

# Design notes written by hand (why a mechanism was chosen, with the measurements
# behind it): bench/NOTES.md, copied verbatim after the generated sections.
try:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")) as f:
        L += ["", f.read().strip(), ""]
except OSError:
    pass


def carry_over(text):
    """Sections whose steps did not run this time (ONLY=..., with no earlier results in RESULTS_DIR)
    keep their text from the existing report, and the header says so."""
    try:
        with open(out_path) as f:
            old = f.read()
    except OSError:
        return text

    def split(t):
        parts, cur = [], []
        for line in t.splitlines():
            if line.startswith("## ") and cur:
                parts.append("\n".join(cur))
                cur = []
            cur.append(line)
        parts.append("\n".join(cur))
        return parts

    old_secs = {p.splitlines()[0]: p for p in split(old)[1:]}
    old_date = next((l[len("- Date: "):] for l in old.splitlines() if l.startswith("- Date: ")), "an earlier run")
    old_date = old_date.split(" (")[0].split(";")[0]
    parts = split(text)
    kept = 0
    for i, p in enumerate(parts[1:], 1):
        title = p.splitlines()[0]
        not_run = "```\n(not run)\n```" in p or (title.startswith("## TLS vs plaintext") and
                                                 read("s2s-component", "cmd") is None)
        if not_run and title in old_secs:
            sec = old_secs[title].rstrip() + "\n"
            if "\n_Kept from the report of " not in sec:
                head, _, rest = sec.partition("\n")
                sec = f"{head}\n\n_Kept from the report of {old_date}: its step did not run this time._\n{rest}"
            parts[i] = sec
            kept += 1
    if kept:
        parts[0] = parts[0].replace(f"- Date: {now}",
                                    f"- Date: {now}; {kept} sections, each marked, are kept from earlier"
                                    " reports (their steps did not run this time)")
    return "\n".join(parts)


text = carry_over("\n".join(L).rstrip() + "\n")
with open(out_path, "w") as f:
    f.write(text.rstrip() + "\n")
