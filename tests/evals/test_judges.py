"""Judges against a fake OpenAI-compatible server started in the test, a tiny local judge, the win rate."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from robustft.cli import main
from robustft.evals.judges import (
    ALPACA_EVAL_GPT4_SYSTEM,
    JUDGES,
    JudgeUnavailableError,
    LocalHFJudge,
    OpenAIJudge,
    Pair,
    annotate,
    build_judge,
    judge_needs_network,
    parse_ranking,
    win_rate_summary,
)
from robustft.train.config import RunError
from tests.helpers import shared_data_dir

SECRET = "sk-test-NEVER-WRITE-ME-0123456789"


class FakeJudgeServer:
    """/v1/chat/completions ranking whichever answer contains "GOOD" first. Failures: after `fail_after`
    requests it answers 503; the first `fail_first` requests get `fail_status`; `status` forces an HTTP
    error on every request, whose body echoes the key (as a careless server might); `reply` (content
    type, body) replaces every answer. Every error asks for
    a 10 ms Retry-After, which the openai client honours, so retries cost the tests nothing. Each answer
    waits `delay_s`; `max_in_flight` is the most requests it was answering at once."""

    def __init__(
        self,
        fail_after: int | None = None,
        status: int | None = None,
        *,
        fail_first: int = 0,
        fail_status: int = 503,
        delay_s: float = 0.0,
        reply: tuple[str, bytes] | None = None,
    ) -> None:
        self.requests: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    # header names as sent vary in case between HTTP clients
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    server.requests.append({"path": self.path, "headers": headers, "body": body})
                    number = len(server.requests)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(delay_s)
                    self.answer(body, number)
                except OSError:  # the client gave up (its timeout) and closed the connection
                    pass
                finally:
                    with lock:
                        server.in_flight -= 1

            def answer(self, body: dict, number: int) -> None:
                code = status
                if code is None and number <= fail_first:
                    code = fail_status
                if code is None and fail_after is not None and number > fail_after:
                    code = 503
                if code is not None:
                    self.send_response(code)
                    self.send_header("retry-after-ms", "10")
                    self.end_headers()
                    self.wfile.write(f"bad key {self.headers.get('Authorization')}".encode())
                    return
                if reply is not None:
                    self.send_response(200)
                    self.send_header("Content-Type", reply[0])
                    self.end_headers()
                    self.wfile.write(reply[1])
                    return
                user = body["messages"][1]["content"]
                first = user.split('"model": "model_1"')[1].split('"model": "model_2"')[0]
                ranks = (1, 2) if "GOOD" in first else (2, 1)
                first_rank, second_rank = ranks
                content = str(
                    [{"model": "model_1", "rank": first_rank}, {"model": "model_2", "rank": second_rank}]
                )
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, *args) -> None:  # keep the test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeJudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def openai_judge(url: str | None, **settings) -> OpenAIJudge:
    options = {"model": "fake-gpt-4", "base_url": url, "api_key_env": "FAKE_JUDGE_KEY", "max_retries": 1}
    return OpenAIJudge(**{**options, "timeout_s": 5, **settings})


PAIRS = [
    Pair(id=i, instruction=f"Question {i}?", output=f"GOOD answer {i}", reference=f"meh {i}")
    for i in range(12)
]


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)


def all_text(root: Path) -> str:
    return "".join(path.read_text(errors="replace") for path in root.rglob("*") if path.is_file())


def test_prompt_format_order_and_cache(tmp_path, api_key, caplog):
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache" / "fake.jsonl"
    with FakeJudgeServer() as server:
        annotations = annotate(PAIRS, openai_judge(server.url), cache, seed=3)
        request = server.requests[0]
        assert request["path"] == "/v1/chat/completions"
        assert request["headers"]["authorization"] == f"Bearer {SECRET}"
        body = request["body"]
        assert body["model"] == "fake-gpt-4" and body["temperature"] == 0 and body["max_tokens"] == 100
        assert body["messages"][0] == {"role": "system", "content": ALPACA_EVAL_GPT4_SYSTEM}
        user = body["messages"][1]["content"]
        assert '"instruction": """Question' in user and "Now please rank the models" in user
        assert len(server.requests) == len(PAIRS)

        # the coin is recorded, both orders occur, and the model (always better here) wins in both
        orders = [a["model_first"] for a in annotations]
        assert 0 < sum(orders) < len(orders)
        assert all(a["preference"] == 2.0 for a in annotations)
        assert {a["preference_shown"] for a in annotations} == {1.0, 2.0}
        assert not any(a["cached"] for a in annotations)
        # the same seed gives the same coins; the model's output is shown first exactly when recorded
        shown_first = {
            r["body"]["messages"][1]["content"].split('"answer": """')[1].startswith("GOOD")
            for r in server.requests
        }
        assert shown_first == {True, False}

        again = annotate(PAIRS, openai_judge(server.url), cache, seed=3)
        assert len(server.requests) == len(PAIRS), "a rerun makes no request"
        assert all(a["cached"] for a in again)
        assert [a["preference"] for a in again] == [a["preference"] for a in annotations]
    assert len(cache.read_text().splitlines()) == len(PAIRS)
    assert SECRET not in all_text(tmp_path) and SECRET not in caplog.text


def test_only_an_api_judge_needs_the_network():
    """The workflow runs such a judge where Snakemake runs, since compute nodes are offline."""
    assert judge_needs_network({"kind": "openai", "model": "gpt-4"})
    assert not judge_needs_network({"kind": "local_hf", "model": "smollm2-135m"})
    with pytest.raises(ValueError, match=r"'kind' must be one of .*got 'gpt'"):
        judge_needs_network({"kind": "gpt"})


def test_a_judgement_cut_short_by_a_killed_job_is_judged_again(tmp_path, api_key, caplog):
    """All jobs of a judge append to one cache: a line torn by a killed job never stops a later one."""
    cache = tmp_path / "fake.jsonl"
    with FakeJudgeServer() as server:
        first = annotate(PAIRS, openai_judge(server.url), cache)
        data = cache.read_bytes()
        cache.write_bytes(data[: len(data) - 40])  # the last judgement's writer was killed mid-line
        with caplog.at_level(logging.WARNING):
            again = annotate(PAIRS, openai_judge(server.url), cache)
        assert "unfinished last line" in caplog.text
        assert len(server.requests) == len(PAIRS) + 1, "only the torn judgement is made again"
        assert [a["preference"] for a in again] == [a["preference"] for a in first]
        # The fragment stays, closed, between whole lines; a third job skips it and asks nothing.
        third = annotate(PAIRS, openai_judge(server.url), cache)
        assert len(server.requests) == len(PAIRS) + 1 and all(a["cached"] for a in third)
    assert len(cache.read_text().splitlines()) == len(PAIRS) + 1


def test_unreachable_endpoint_names_the_url_and_keeps_earlier_judgements(tmp_path, api_key, caplog):
    cache = tmp_path / "fake.jsonl"
    with FakeJudgeServer(fail_after=5) as server:
        with pytest.raises(JudgeUnavailableError) as caught:
            annotate(PAIRS, openai_judge(server.url), cache)
        assert isinstance(caught.value, RunError)
        message = str(caught.value)
        assert f"{server.url}/chat/completions" in message
        assert "unreachable after 2 attempts (last: HTTP 503)" in message
        assert SECRET not in message
    assert len(cache.read_text().splitlines()) == 5, "the judgements made before the failure are saved"

    # a closed port: connection refused, same error; the 5 saved judgements are not asked again
    with FakeJudgeServer() as server:
        closed_url = server.url
    with pytest.raises(JudgeUnavailableError, match=closed_url):
        annotate(PAIRS, openai_judge(closed_url), cache)
    assert len(cache.read_text().splitlines()) == 5
    assert SECRET not in all_text(tmp_path) and SECRET not in caplog.text


def test_refused_request_never_shows_the_key(tmp_path, api_key):
    for status in (401, 400):
        with FakeJudgeServer(status=status) as server, pytest.raises(JudgeUnavailableError) as caught:
            annotate(PAIRS[:1], openai_judge(server.url), tmp_path / "c.jsonl")
        assert f"HTTP {status}" in str(caught.value) and server.url in str(caught.value)
        assert SECRET not in str(caught.value)
        if status == 400:
            assert "bad key Bearer ***" in str(caught.value)  # a body is shown, with the key redacted


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (("application/json", b'{"id": "x"}'), "answered without choices"),
        (("text/html", b"<html>a proxy's page</html>"), "answered without choices"),
        (("application/json", b"{not json"), "not JSON"),
    ],
)
def test_an_answer_that_is_not_a_completion_is_an_error(tmp_path, api_key, reply, message):
    with FakeJudgeServer(reply=reply) as server, pytest.raises(JudgeUnavailableError, match=message):
        annotate(PAIRS[:1], openai_judge(server.url, max_retries=0), tmp_path / "c.jsonl")
    assert not (tmp_path / "c.jsonl").exists() or not (tmp_path / "c.jsonl").read_text()


@pytest.mark.parametrize("code", [500, 429])
def test_the_client_retries_server_errors_and_rate_limits(tmp_path, api_key, code):
    with FakeJudgeServer(fail_first=2, fail_status=code) as server:
        annotations = annotate(PAIRS[:1], openai_judge(server.url, max_retries=2), tmp_path / "c.jsonl")
        assert len(server.requests) == 3, "two failures, then the answer"
        assert annotations[0]["preference"] == 2.0
    # one retry is not enough: the error says how many attempts were made and what the last one got
    with FakeJudgeServer(fail_first=2, fail_status=code) as server:
        with pytest.raises(
            JudgeUnavailableError, match=rf"unreachable after 2 attempts \(last: HTTP {code}\)"
        ):
            annotate(PAIRS[:1], openai_judge(server.url, max_retries=1), tmp_path / "d.jsonl")
        assert len(server.requests) == 2


def test_timeout_setting_reaches_the_client(tmp_path, api_key):
    judge = openai_judge(None, max_retries=0, timeout_s=0.3)
    with FakeJudgeServer(delay_s=3.0) as server:
        judge.base_url = server.url
        start = time.monotonic()
        with pytest.raises(JudgeUnavailableError, match=r"unreachable after 1 attempts .*timed out"):
            annotate(PAIRS[:1], judge, tmp_path / "c.jsonl")
        assert time.monotonic() - start < 2.5, "the request was cut at timeout_s, not at the server's answer"
        assert len(server.requests) == 1
    assert judge.client().timeout == 0.3 and judge.client().max_retries == 0


def test_requests_in_flight_are_bounded_by_workers(tmp_path, api_key):
    for workers in (1, 3):
        with FakeJudgeServer(delay_s=0.3) as server:
            annotations = annotate(
                PAIRS[:6], openai_judge(server.url, workers=workers), tmp_path / f"{workers}.jsonl"
            )
            assert server.max_in_flight == workers and len(server.requests) == 6
        assert all(a["preference"] == 2.0 for a in annotations)


def test_base_url_falls_back_to_openai_base_url_and_no_key_is_sent_where_none_is_asked(tmp_path, monkeypatch):
    """As the openai package: $OPENAI_BASE_URL when the config names no base_url. A keyless judge (a local
    vLLM server) sends a placeholder, never the key in $OPENAI_API_KEY that the package would pick up."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeJudgeServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        judge = build_judge({"kind": "openai", "model": "vllm-model", "api_key_env": None})
        assert judge.identity()["base_url"] == server.url
        annotate(PAIRS[:2], judge, tmp_path / "c.jsonl")
        assert [r["headers"]["authorization"] for r in server.requests] == ["Bearer EMPTY"] * 2
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert OpenAIJudge().url == "https://api.openai.com/v1/chat/completions"
    assert SECRET not in all_text(tmp_path)


def test_judges_import_without_openai_and_an_openai_judge_names_the_package(monkeypatch):
    code = "import sys, robustft.evals.judges; assert 'openai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "openai", None)  # what an environment without the package gives
    with pytest.raises(JudgeUnavailableError, match=r"needs the openai package.*robustft\[judge\]"):
        openai_judge("http://127.0.0.1:9/v1", api_key_env=None).judge("q", "a", "b")
    with pytest.raises(RunError, match="max_retries must be >= 0"):
        build_judge({"kind": "openai", "max_retries": -1})


def test_missing_key_and_judge_config(monkeypatch):
    monkeypatch.delenv("FAKE_JUDGE_KEY", raising=False)
    with pytest.raises(RunError, match="FAKE_JUDGE_KEY is not set"):
        openai_judge("http://127.0.0.1:9/v1").judge("q", "a", "b")
    assert set(JUDGES) == {"openai", "local_hf"}
    judge = build_judge({"kind": "openai", "model": "m", "base_url": "http://x/v1", "api_key_env": None})
    assert "api_key_env" not in judge.identity() and judge.identity()["model"] == "m"
    with pytest.raises(RunError, match="kind"):
        build_judge({"kind": "gpt5"})
    with pytest.raises(RunError, match=r"unknown key\(s\) \['api_key'\]"):
        build_judge({"kind": "openai", "api_key": "sk-no"})


def test_parse_ranking():
    assert parse_ranking("[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]") == 1.0
    assert parse_ranking("Sure:\n[{'model': 'model_2', 'rank': 1}, {'model': 'model_1', 'rank': 2}]") == 2.0
    assert parse_ranking("model_1 is better") is None
    assert parse_ranking("[{'model': 'model_1', 'rank': 3}]") is None


def test_win_rate_and_bootstrap_on_hand_made_preferences():
    out = win_rate_summary([2, 2, 1, 1.5, None], n_bootstrap=500, seed=1)
    assert out["win_rate"] == pytest.approx(62.5)  # (1 + 1 + 0 + 0.5) / 4
    assert (out["n"], out["n_wins"], out["n_losses"], out["n_draws"], out["n_invalid"]) == (4, 2, 1, 1, 1)
    shifted = [1, 1, 0, 0.5]
    mean = sum(shifted) / 4
    sd = (sum((x - mean) ** 2 for x in shifted) / 3) ** 0.5
    assert out["standard_error"] == pytest.approx(sd / 2 * 100)
    assert out["discrete_win_rate"] == pytest.approx(62.5)
    assert 0 <= out["ci_low"] <= out["win_rate"] <= out["ci_high"] <= 100
    assert win_rate_summary([2, 2, 1, 1.5], n_bootstrap=500, seed=1)["ci_low"] == out["ci_low"]  # seeded
    sure = win_rate_summary([2.0] * 10, n_bootstrap=200)
    assert sure["win_rate"] == sure["ci_low"] == sure["ci_high"] == 100.0
    weighted = win_rate_summary([1.9, 1.2, 1.5])
    assert weighted["win_rate"] == pytest.approx(160 / 3) and weighted["discrete_win_rate"] == pytest.approx(
        50.0
    )
    # the CI of many 50/50 preferences is about ±1.96 standard errors
    wide = win_rate_summary([1.0, 2.0] * 200, n_bootstrap=4000, seed=0)
    assert wide["ci_high"] - wide["ci_low"] == pytest.approx(2 * 1.96 * wide["standard_error"], rel=0.1)
    # a known case: one loss and one win resample to win rates 0, 50 and 100 with probabilities 1/4, 1/2
    # and 1/4, so the 95% percentile interval is [0, 100] and the 40% one (30th-70th percentile) is 50
    pair = win_rate_summary([1.0, 2.0], n_bootstrap=2000, seed=5)
    assert (pair["ci_low"], pair["ci_high"]) == (0.0, 100.0)
    narrow = win_rate_summary([1.0, 2.0], n_bootstrap=2000, seed=5, confidence=0.4)
    assert narrow["ci_low"] == narrow["ci_high"] == 50.0
    with pytest.raises(ValueError, match=r"\[1, 2\]"):
        win_rate_summary([0.5])


def test_local_hf_judge_gives_valid_preferences(tmp_path):
    pytest.importorskip("torch")
    from tests.evals.test_generation import tiny_llama, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    directory = tmp_path / "judge-model"
    tiny_llama(tokenizer, positions=4096).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    judge = LocalHFJudge(model=str(directory), max_output_tokens=64)
    cache = tmp_path / "local.jsonl"
    annotations = annotate(PAIRS[:4], judge, cache)
    for a in annotations:
        assert 1.0 <= a["preference"] <= 2.0 and set(a["raw"]) == {"logprob_1", "logprob_2"}
        # the shown preference is 1 + P(second) / (P(first) + P(second)), mapped back to "2 = model wins"
        first, second = a["raw"]["logprob_1"], a["raw"]["logprob_2"]
        p_second = math.exp(second) / (math.exp(first) + math.exp(second))
        assert a["preference_shown"] == pytest.approx(1 + p_second)
        assert a["preference"] == pytest.approx(
            3 - a["preference_shown"] if a["model_first"] else 1 + p_second
        )
    _, token_1, token_2 = judge.verdict_tokens(tokenizer, "Answer: Output")
    assert token_1 != token_2 and tokenizer.decode([token_1]).strip() == "1"
    assert all(a["cached"] for a in annotate(PAIRS[:4], judge, cache))


def test_judge_cli_on_real_alpaca_eval(tmp_path, api_key):
    data_dir = shared_data_dir()
    source = data_dir / "alpaca_eval" / "alpaca_eval.jsonl"
    if not source.exists():
        pytest.skip(f"AlpacaEval file not found at {source}")
    rows = [json.loads(line) for line in source.read_text().splitlines()[:10]]
    generations = tmp_path / "generations" / "alpaca_eval.jsonl"
    generations.parent.mkdir()
    generations.write_text(
        "".join(
            json.dumps(
                {"id": i, "instruction": row["instruction"], "output": ("GOOD " if i < 7 else "") + "x"}
            )
            + "\n"
            for i, row in enumerate(rows)
        )
    )
    out = tmp_path / "judge" / "fake.json"
    with FakeJudgeServer() as server:
        config = json.dumps({"kind": "openai", "model": "fake-gpt-4", "base_url": server.url,
                             "api_key_env": "FAKE_JUDGE_KEY", "max_retries": 0})  # fmt: skip
        argv = ["judge", "--generations", str(generations), "--judge-config", config, "--name", "fake",
                "--cache", str(tmp_path / "cache"), "--out", str(out),
                "--data-dir", str(data_dir)]  # fmt: skip
        assert main(argv) == 0
        assert len(server.requests) == 10
        # the reference shown is AlpacaEval's text-davinci-003 output of that instruction
        assert any(rows[0]["output"][:40] in r["body"]["messages"][1]["content"] for r in server.requests)
    result = json.loads(out.read_text())
    assert result["win_rate"] == pytest.approx(70.0) and (result["n_wins"], result["n_losses"]) == (7, 3)
    assert result["judge"] == {"name": "fake", "kind": "openai", "model": "fake-gpt-4",
                               "description": OpenAIJudge.description}  # fmt: skip
    assert result["length_controlled_win_rate"] is None and "df_gamed" in result["length_controlled_reason"]
    assert result["reference_generator"] == "text_davinci_003" and result["n_reference"] == 805
    for key in ("ci_low", "ci_high", "standard_error", "n_draws"):
        assert key in result
    assert len((tmp_path / "judge" / "fake.annotations.jsonl").read_text().splitlines()) == 10
    # the server is gone: cached judgements make the rerun free; a new output needs the endpoint
    assert main(argv) == 0 and json.loads(out.read_text())["n_cached"] == 10
    generations.write_text(generations.read_text().replace('"x"', '"y"', 1))
    assert main(argv) == 2
    assert SECRET not in all_text(tmp_path)
