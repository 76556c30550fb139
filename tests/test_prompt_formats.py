"""The prompt format (DSPy's adapter: chat, json, xml) as a config knob: its own config id, its
own prompts, its own score, named in the program's manifest."""

import json
import sqlite3

from conftest import cli

from promptopt.testing import ScriptedServer, fill_fields

LIMIT = 4


def test_each_prompt_format_is_a_config_of_its_own_scored_on_what_the_model_does_in_that_format(medqa, tmp_path):
    items = {ex.inputs["question"]: ex for ex in medqa.examples("test", LIMIT)}
    xml_right = set(list(items)[:2])

    def model(prompt):
        question = next(q for q in items if q in prompt)
        ex = items[question]
        wrong = next(k for k in ex.inputs["options"] if k != ex.gold)
        if "Respond with a JSON object" in prompt:  # right on every item when asked for JSON
            return fill_fields(prompt, ex.gold)
        if "wrapped in XML tags" in prompt:  # right on half when asked for XML
            letter = ex.gold if question in xml_right else wrong
            return f"<reasoning>\nLooking at each option.\n</reasoning>\n<answer>\n{letter}\n</answer>"
        return fill_fields(prompt, wrong)  # never right in DSPy's chat format

    with ScriptedServer(model) as server:
        done = cli("run", "--model", "openai/scripted", "--api-base", server.base_url, "--out", str(tmp_path),
                   "--limit", str(LIMIT), "--split", "test", "--strategy", "cot", "--strategy", "cot:adapter=json",
                   "--strategy", "cot:adapter=xml")  # fmt: skip
        assert done.returncode == 0, done.stderr
        bad = cli("run", "--model", "openai/scripted", "--api-base", server.base_url, "--out", str(tmp_path),
                  "--strategy", "cot:adapter=yaml")  # fmt: skip
    (db,) = tmp_path.glob("run-*/results.sqlite")
    with sqlite3.connect(db) as conn:
        scores = dict(conn.execute("select config, avg(score) from records group by config_id").fetchall())
    by_adapter = {json.loads(c)["knobs"].get("adapter", "chat"): s for c, s in scores.items()}
    assert by_adapter == {"chat": 0.0, "json": 1.0, "xml": 0.5}
    manifests = {json.loads(p.read_text())["model"]["adapter"] for p in tmp_path.glob("run-*/programs/*/manifest.json")}
    assert manifests == {"LenientChatAdapter", "LenientJSONAdapter", "LenientXMLAdapter"}
    assert bad.returncode == 1 and "knob 'adapter' must be one of chat, json, xml, not 'yaml'" in bad.stderr
