"""The pure parts of the side-by-side VCS benchmark: formatting, ratios, verdicts, order, configs.

No timing is asserted and no server is started; ``make bench`` does that.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest

from tests.bench import scenarios as sc
from tests.bench.clientops import parse_wrk
from tests.bench.common import BenchError
from tests.bench.harness import GIT_SIDES
from tests.bench.procmem import ProcessTable, children, descendants
from tests.bench.refservers import NginxLayout, hg_serve_command, htpasswd_line, nginx_config
from tests.bench.report import (
    FLOOR,
    OURS_POOL,
    OURS_TLS,
    REF_PLAIN,
    REF_TLS,
    Metric,
    Results,
    Target,
    format_ratio,
    format_value,
    group_table,
    render,
    round_order,
    target_rows,
)
from tests.bench.sides import Origins, basic_authorization, client_config, copy_git
from tests.bench.targets import count_slow, extra_targets, targets
from tests.bench.vcs_bench import make_plan, parse_args

CLONE = Metric("git: clone", "first clone")
RATE = Metric("git: throughput", "info/refs", "req/s", True)


def filled(samples: dict[tuple[Metric, str], list[float]]) -> Results:
    results = Results()
    for (metric, side), values in samples.items():
        for value in values:
            results.add(metric, side, value)
    return results


@pytest.mark.parametrize(("value", "unit", "shown"), [
    (None, "s", "—"),
    (0.0421, "s", "0.042"),
    (3.14159, "s", "3.142"),
    (241.7, "s", "241.7"),
    (4.567, "ms", "4.57"),
    (36.2, "req/s", "36.2"),
    (1234.4, "req/s", "1,234"),
    (980.0, "MiB", "980"),
], ids=["missing", "fast", "seconds", "minutes", "ms", "slow-rate", "fast-rate", "memory"])
def test_format_value(value: float | None, unit: str, shown: str) -> None:
    assert format_value(value, unit) == shown


def test_format_ratio() -> None:
    assert format_ratio(None) == "—"
    assert format_ratio(1.0 / 3.0) == "0.33×"
    assert format_ratio(12.0) == "12.00×"


def test_median_and_ratio() -> None:
    results = filled({(CLONE, OURS_TLS): [3.0, 1.0, 2.0, 100.0, 2.5], (CLONE, REF_TLS): [1.0, 1.0, 2.0]})
    assert results.median(CLONE, OURS_TLS) == 2.5
    assert results.median(CLONE, REF_TLS) == 1.0
    assert results.ratio(CLONE, OURS_TLS, REF_TLS) == 2.5
    assert results.ratio(CLONE, OURS_POOL, REF_PLAIN) is None
    assert results.median(CLONE, FLOOR) is None


def rounds(metric: Metric, per_round: list[dict[str, list[float]]]) -> Results:
    """Results whose round ``n`` holds ``per_round[n]``'s samples (side -> values)."""
    results = Results()
    for samples in per_round:
        results.new_round()
        for side, values in samples.items():
            for value in values:
                results.add(metric, side, value)
    return results


def test_ratio_compares_the_sides_within_each_round() -> None:
    # The machine slows down over the run; ours is faster in two rounds of three.
    results = rounds(CLONE, [{OURS_TLS: [1.0], REF_TLS: [1.1]},
                             {OURS_TLS: [1.9], REF_TLS: [2.0]},
                             {OURS_TLS: [3.0], REF_TLS: [1.5]}])
    ours, ref = results.median(CLONE, OURS_TLS), results.median(CLONE, REF_TLS)
    assert ours is not None and ref is not None
    assert ours / ref == pytest.approx(1.9 / 1.5)
    assert results.ratio(CLONE, OURS_TLS, REF_TLS) == pytest.approx(1.9 / 2.0)


def test_ratio_skips_rounds_one_side_missed_and_uses_a_rounds_median() -> None:
    results = rounds(CLONE, [{OURS_TLS: [5.0]},
                             {OURS_TLS: [2.0, 4.0, 9.0], REF_TLS: [2.0]},
                             {OURS_TLS: [1.0], REF_TLS: [1.0]},
                             {REF_TLS: [7.0]}])
    assert results.ratio(CLONE, OURS_TLS, REF_TLS) == pytest.approx((2.0 + 1.0) / 2)


def test_sides_without_a_common_round_are_compared_by_their_medians() -> None:
    results = rounds(CLONE, [{OURS_TLS: [3.0, 1.0]}, {REF_TLS: [1.0, 3.0, 2.0]}])
    assert results.ratio(CLONE, OURS_TLS, REF_TLS) == 1.0


def test_zero_reference_gives_no_ratio() -> None:
    results = filled({(CLONE, OURS_TLS): [1.0], (CLONE, REF_TLS): [0.0]})
    assert results.ratio(CLONE, OURS_TLS, REF_TLS) is None


def test_group_table_shows_sides_with_data_ratios_and_notes() -> None:
    results = filled({(CLONE, OURS_TLS): [2.0], (CLONE, REF_TLS): [1.0], (CLONE, OURS_POOL): [1.5],
                      (CLONE, REF_PLAIN): [1.0, 1.0], (CLONE, FLOOR): [0.5]})
    other = Metric("git: clone", "push")
    results.add(other, OURS_TLS, 1.0)
    results.add(other, REF_TLS, 1.0)
    results.note(other, OURS_POOL, "n/a (push_ssl)")
    lines = group_table(results, "git: clone").splitlines()
    assert lines[0] == ("| measurement | unit | ours, HAProxy TLS | ours, pool direct | reference, nginx TLS | "
                        "reference, plain | local floor | ours/ref TLS | ours/ref plain | runs |")
    assert lines[2] == "| first clone | s | 2.000 | 1.500 | 1.000 | 1.000 | 0.500 | 2.00× | 1.50× | 1/2 |"
    assert lines[3] == "| push | s | 1.000 | n/a (push_ssl) | 1.000 | — | — | 1.00× | — | 1 |"


def test_group_table_leaves_out_sides_and_pairs_without_data() -> None:
    results = filled({(RATE, OURS_TLS): [900.0], (RATE, REF_TLS): [300.0]})
    header, _align, row = group_table(results, "git: throughput").splitlines()
    assert "pool direct" not in header and "floor" not in header and "ours/ref plain" not in header
    assert row == "| info/refs | req/s (higher is better) | 900 | 300 | 3.00× | 1 |"


@pytest.mark.parametrize(("ours", "reference", "verdict"), [
    (1.1, 1.0, "met"),
    (1.2, 1.0, "met"),
    (1.3, 1.0, "NOT met"),
    (None, 1.0, "not measured"),
], ids=["under", "at-limit", "over", "missing"])
def test_target_verdict_lower_is_better(ours: float | None, reference: float, verdict: str) -> None:
    samples = {(CLONE, REF_TLS): [reference]}
    if ours is not None:
        samples[(CLONE, OURS_TLS)] = [ours]
    (row,) = target_rows(filled(samples), [Target("clone ≤ 1.2×", CLONE, 1.2)])
    assert row[-1] == verdict


@pytest.mark.parametrize(("ours", "verdict"), [(250.0, "met"), (150.0, "NOT met")], ids=["twice", "less"])
def test_target_verdict_higher_is_better(ours: float, verdict: str) -> None:
    results = filled({(RATE, OURS_TLS): [ours], (RATE, REF_TLS): [100.0]})
    assert target_rows(results, [Target("rate ≥ 2×", RATE, 2.0)])[0][-1] == verdict


def test_every_measured_pair_must_meet_a_target() -> None:
    results = filled({(CLONE, OURS_TLS): [1.0], (CLONE, REF_TLS): [1.0],
                      (CLONE, OURS_POOL): [3.0], (CLONE, REF_PLAIN): [1.0]})
    assert target_rows(results, [Target("clone", CLONE, 1.2)])[0] == ["clone", "1.00×", "3.00×", "NOT met"]


def test_render_has_every_section() -> None:
    results = filled({(CLONE, OURS_TLS): [1.0], (CLONE, REF_TLS): [1.0]})
    results.remarks.append("clone-large: skipped")
    results.failures.append("push: it broke")
    text = render(results, [Target("clone ≤ 1.2×", CLONE, 1.2)], title="T", preamble=["how"],
                  extra_targets=[["all succeed", "—", "—", "met"]], appendix=["## Time taken"])
    for part in ("# T\n", "\nhow\n", "## git: clone\n", "## Targets (issues 7, 16 and 17)",
                 "| clone ≤ 1.2× | 1.00× | — | met |", "| all succeed | — | — | met |", "- clone-large: skipped",
                 "## Failures\n\n- push: it broke",
                 "## Time taken"):
        assert part in text


def test_round_order_reverses_every_other_round() -> None:
    assert [round_order(["ours", "ref"], number) for number in range(4)] == [
        ["ours", "ref"], ["ref", "ours"], ["ours", "ref"], ["ref", "ours"]]
    assert round_order(GIT_SIDES, 1) == list(reversed(GIT_SIDES))


def test_rollback_drops_what_was_added_since_the_mark() -> None:
    results = filled({(CLONE, OURS_TLS): [1.0, 2.0]})
    mark = results.mark()
    results.add(CLONE, OURS_TLS, 3.0)
    results.add(RATE, REF_TLS, 100.0)
    results.rollback(mark)
    assert results.samples == {(CLONE, OURS_TLS): [1.0, 2.0]}


def test_parse_wrk() -> None:
    output = ("Running 5s test @ http://127.0.0.1:1/x\n  2 threads and 8 connections\n"
              "  8123 requests in 5.00s, 10.1MB read\nRequests/sec:   1624.53\nTransfer/sec:      2.02MB\n")
    assert parse_wrk(output) == 1624.53
    with pytest.raises(BenchError, match="Non-2xx"):
        parse_wrk(output.replace("Requests/sec", "  Non-2xx or 3xx responses: 8123\nRequests/sec"))
    with pytest.raises(BenchError, match="Socket errors"):
        socket_errors = "  Socket errors: connect 0, read 3, write 0, timeout 0\n"
        parse_wrk(output.replace("Requests/sec", socket_errors + "Requests/sec"))
    with pytest.raises(BenchError, match="no rate"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def layout(tmp_path: Path, *, root: bool) -> NginxLayout:
    return NginxLayout(prefix=tmp_path / "nginx", plain_port=8001, tls_port=8002, certificate=tmp_path / "server.pem",
                       fcgi_socket=tmp_path / "fcgi.sock", git_root=tmp_path / "git",
                       hg_ports={"flask-hg": 8003, "hg-push": 8004}, htpasswd=tmp_path / "htpasswd", run_as_root=root)


def test_nginx_config_serves_git_and_hg_on_both_ports_behind_basic_auth(tmp_path: Path) -> None:
    config = nginx_config(layout(tmp_path, root=True))
    common, plain, tls = config.split("server {")
    assert 'auth_basic "reference";' in common and f"auth_basic_user_file {tmp_path / 'htpasswd'};" in common
    assert "auth_basic off" not in config
    assert "listen 127.0.0.1:8001;" in plain
    assert "listen 127.0.0.1:8002 ssl http2;" in tls
    assert f"ssl_certificate {tmp_path / 'server.pem'};" in tls
    for part in (plain, tls):
        assert "fastcgi_param GIT_PROTOCOL $http_git_protocol;" in part
        assert f"fastcgi_param GIT_PROJECT_ROOT {tmp_path / 'git'};" in part
        assert "fastcgi_param GIT_HTTP_EXPORT_ALL 1;" in part
        assert "fastcgi_param REMOTE_USER $remote_user;" in part  # http-backend's condition for receive-pack
        assert "http.receivepack" not in part
        assert f"fastcgi_pass unix:{tmp_path / 'fcgi.sock'};" in part
        assert "client_max_body_size 0;" in part
        assert "location /flask-hg {" in part and "proxy_pass http://127.0.0.1:8003;" in part
        assert "location /hg-push {" in part and "proxy_pass http://127.0.0.1:8004;" in part
    assert config.count("{") == config.count("}")
    assert "user root root;" in config and "daemon off;" in config


def test_nginx_config_names_no_user_when_not_root(tmp_path: Path) -> None:
    assert "user " not in nginx_config(layout(tmp_path, root=False))


def test_htpasswd_line_is_nginx_ssha() -> None:
    line = htpasswd_line("bench", "correct horse", salt=b"12345678")
    user, _, hashed = line.rstrip("\n").partition(":")
    assert user == "bench" and hashed.startswith("{SSHA}") and line.endswith("\n")
    raw = base64.b64decode(hashed.removeprefix("{SSHA}"))
    assert raw == hashlib.sha1(b"correct horse12345678").digest() + b"12345678"
    assert htpasswd_line("bench", "correct horse") != htpasswd_line("bench", "correct horse")  # fresh salts


def test_client_config_gives_each_origin_its_mechanism(tmp_path: Path) -> None:
    where = Origins(git_store=("https://127.0.0.1:443", "https://127.0.0.1:8002"),
                    git_header=("http://127.0.0.1:8080", "http://127.0.0.1:8001"),
                    hg_auth=("https://127.0.0.1:443", "http://127.0.0.1:8081", "https://127.0.0.1:8002",
                             "http://127.0.0.1:8001"))
    credentials, gitconfig, hgrc = client_config(where, tmp_path / "store", "bench", "a b/c")
    assert credentials == "https://bench:a%20b%2Fc@127.0.0.1:443\nhttps://bench:a%20b%2Fc@127.0.0.1:8002\n"
    assert f"[credential]\n\thelper = store --file={tmp_path / 'store'}\n" in gitconfig
    header = f"\textraHeader = Authorization: {basic_authorization('bench', 'a b/c')}\n"
    for origin in where.git_header:
        assert f'[http "{origin}/"]\n{header}' in gitconfig
    assert gitconfig.count("extraHeader") == 2
    assert hgrc.startswith("[auth]\n")
    for number, origin in enumerate(where.hg_auth):
        assert (f"s{number}.prefix = {origin}/\ns{number}.username = bench\ns{number}.password = a b/c\n"
                in hgrc)
    assert basic_authorization("bench", "a b/c") == "Basic " + base64.b64encode(b"bench:a b/c").decode()


def test_hg_serve_allows_plain_http_pushes(tmp_path: Path) -> None:
    command = hg_serve_command(tmp_path / "repo", "flask-hg", 8003, tmp_path)
    assert command[1:3] == ["serve", "-R"]
    assert ["--prefix", "flask-hg"] == command[command.index("--prefix"):command.index("--prefix") + 2]
    assert "web.push_ssl=false" in command and "web.allow-push=*" in command
    assert ["-a", "127.0.0.1", "-p", "8003"] == command[4:8]


def test_process_tree() -> None:
    table: ProcessTable = {1: (0, "init"), 10: (1, "gunicorn"), 11: (10, "gunicorn"), 12: (10, "gunicorn"),
                           13: (11, "git"), 14: (13, "git"), 20: (1, "other")}
    assert sorted(children(table, 10)) == [11, 12]
    assert descendants(table, 11) == {13, 14}
    assert descendants(table, 10) == {11, 12, 13, 14}
    assert descendants(table, 14) == set()


def test_copy_git_never_writes_through_to_the_input(tmp_path: Path) -> None:
    source = tmp_path / "input.git"
    subprocess.run(["git", "init", "-q", "--bare", str(source)], check=True)
    (source / "refs" / "heads" / "main").write_text("0" * 40 + "\n")
    (source / "logs" / "refs" / "heads").mkdir(parents=True)
    (source / "logs" / "refs" / "heads" / "main").write_text("reflog\n")
    target = tmp_path / "copy.git"
    copy_git(source, target)
    assert (target / "refs" / "heads" / "main").stat().st_ino == (source / "refs" / "heads" / "main").stat().st_ino
    with (target / "logs" / "refs" / "heads" / "main").open("a") as reflog:  # appended in place by dulwich
        reflog.write("more\n")
    assert (source / "logs" / "refs" / "heads" / "main").read_text() == "reflog\n"
    copy_git(source, target)  # again: replaces the previous copy
    assert (target / "logs" / "refs" / "heads" / "main").read_text() == "reflog\n"


def test_plans() -> None:
    full = make_plan(parse_args([]))
    assert (full.runs, full.quick_runs, full.large_runs, full.wrk_runs, full.wrk_seconds,
            full.concurrent_clones) == (5, 20, 9, 5, 5.0, 32)
    assert make_plan(parse_args(["--runs", "3"])).quick_runs == 12
    quick = make_plan(parse_args(["--quick"]))
    assert quick.runs == quick.quick_runs == 2 and quick.large_runs == 1 and quick.concurrent_clones == 8
    # Every scenario's rounds have a budget.
    assert {"push-big", "hg-pull", "hg-push"} <= full.budgets.keys()
    assert parse_args(["--scenarios", "clone,hg"]).scenarios == "clone,hg"
    with pytest.raises(SystemExit):
        parse_args(["--scenarios", "clone,nonsense"])


def test_every_target_names_a_row_the_scenarios_measure() -> None:
    rows = {(sc.CLONE_GROUP, sc.FIRST), (sc.CLONE_GROUP, sc.REPEATED), (sc.LARGE_GROUP, sc.FIRST),
            (sc.LARGE_GROUP, sc.REPEATED), (sc.MEMORY_GROUP, sc.FIRST), (sc.NOOP, sc.ROW_FLASK),
            (sc.NOOP, sc.ROW_REFS), (sc.THROUGHPUT, sc.ROW_FLASK), (sc.THROUGHPUT, sc.ROW_REFS),
            *((m.group, m.row) for m in (sc.PUSH_50, sc.PUSH_BIG, sc.HG_CLONE, sc.HG_PULL, sc.HG_PUSH_50)),
            (sc.concurrent_metrics(32)[0].group, "total wall time")}
    found = targets(make_plan(parse_args([])))
    assert {(target.metric.group, target.metric.row) for target in found} == rows
    assert all(target.metric.higher_is_better == (target.metric.unit == "req/s") for target in found)


@pytest.mark.parametrize(("slow", "seconds", "verdict"), [
    (None, 600.0, "not measured"),
    (1, 60.0, "met (1 slow in 1 min of traffic; allowed 2"),
    (3, 780.0, "met (3 slow in 13 min of traffic; allowed 4"),
    (9, 780.0, "NOT met (9 slow"),
], ids=["no-logs", "first-login", "ttl-expiries", "too-many"])
def test_slow_verifications_allowed_once_per_memcached_expiry(slow: int | None, seconds: float, verdict: str) -> None:
    plan = make_plan(parse_args([]))
    rows = extra_targets(Results(), plan, slow, seconds)
    assert str(rows[1][-1]).startswith(verdict)
    assert rows[0][-1] == "not measured"


def test_slow_verifications_are_counted_in_rotated_logs_too(tmp_path: Path) -> None:
    line = "2026-12-02 10:00:00 INFO singlemalt.verify [{pid}] slow password verification user='bench'\n"
    assert count_slow(tmp_path) is None  # no pool has logged anything: not measured, not zero
    (tmp_path / "git.log.1").write_text(line.format(pid=10))  # supervisord rotated the first login away
    (tmp_path / "git.log").write_text("GET /bench/flask.git/info/refs 200\n" + line.format(pid=11))
    (tmp_path / "hg.log").write_text(line.format(pid=12))
    (tmp_path / "web.log").write_text(line.format(pid=13))
    assert count_slow(tmp_path) == 3
