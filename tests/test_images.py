"""Image questions: a scripted vision server that checks every request's image bytes against the
item's own file answers right on a planted share, and every number the report prints about an
image task (the score, the blind score, organ pairs) equals what was planted; a changed image is
asked again alone; a compiled image program loads and answers a new image."""

import json
import re
import shutil

import pytest
from conftest import cli, cli_many
from PIL import Image

import promptopt
from promptopt.images import image_ref
from promptopt.tasks import load_task
from promptopt.testing import ScriptedServer, fill_fields

FAST = {"PROMPTOPT_TIMEOUT_S": "5", "PROMPTOPT_BACKOFF_S": "0.01", "PROMPTOPT_RETRIES": "1"}
N_ITEMS, N_IMAGES = 16, 10  # items 0-5 share their image with items 10-15, as VQA-RAD's questions do
ORGANS = ("HEAD", "CHEST", "ABD")
RIGHT = {i for i in range(N_ITEMS) if i % 4 != 3}  # answered right when the image is shown
BLIND = {i for i in range(N_ITEMS) if i % 4 == 0}  # answered right from the wording alone
ORGAN_OK = {k for k in range(N_IMAGES) if k % 2 == 0}  # images whose organ pair the model gets both halves of


def organ_of(image: int) -> str:
    return ORGANS[image % 3]


def paint(path, image: int, shade: int = 0) -> None:
    Image.new("RGB", (8, 8), (image * 20, 100 + shade, 50)).save(path, format="PNG")


TASK = """\
name: pics
description: Planted image questions.
citation: none
license: CC0
source: {format: jsonl, files: pics.jsonl, images: img}
id: id
inputs: {image: image, question: question}
answer: {type: exact_text, gold: answer}
labels: {organ: organ}
probes: [no_image]
split: {seed: 3, train: 4, val: 4}
baseline: {instructions: Look at the image and answer yes or no.}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("pics")
    (root / "img").mkdir()
    for k in range(N_IMAGES):
        paint(root / "img" / f"p{k}.png", k)
    rows = [{"id": str(i), "image": f"p{i % N_IMAGES}.png", "question": f"Is finding number {i} present?",
             "answer": "yes" if i % 2 == 0 else "no", "organ": organ_of(i % N_IMAGES)} for i in range(N_ITEMS)]  # fmt: skip
    (root / "pics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "pics.yaml").write_text(TASK)
    return root


class Vision:
    """A vision model that knows each item by its question and checks the image it was sent."""

    def __init__(self, world):
        self.world, self.bad, self.blind_asks = world, [], 0
        self.refresh()

    def refresh(self) -> None:
        """The digests of the image files as they are now (a test may repaint one)."""
        self.digest = {k: image_ref(f"p{k}.png", self.world / "img", "test").digest for k in range(N_IMAGES)}
        self.by_digest = {d: k for k, d in self.digest.items()}

    def __call__(self, prompt: str, shown: list[str]) -> str:
        asked = re.findall(r"(?:Question: |\[\[ ## question ## \]\]\n)(.*)", prompt)
        question = asked[-1].strip() if asked else ""
        organ = re.fullmatch(r"Is this an image of the (\w+)\?", question)
        if organ:
            image = self.by_digest.get(shown[-1]) if shown else None
            if image is None:
                self.bad.append(("organ question without its image", question, shown))
                return self.reply(prompt, "no")
            own = organ.group(1) == {"ABD": "abdomen"}.get(organ_of(image), organ_of(image).lower())
            return self.reply(prompt, "yes" if own or image not in ORGAN_OK else "no")
        i = int(re.search(r"number (\d+)", question).group(1))
        gold, wrong = ("yes", "no") if i % 2 == 0 else ("no", "yes")
        if not shown:
            if "`image` (Image)" in prompt:
                self.bad.append(("image field without an image", question))
            self.blind_asks += 1
            return self.reply(prompt, gold if i in BLIND else wrong)
        if shown[-1] != self.digest[i % N_IMAGES]:
            self.bad.append(("wrong image", question, shown))
        return self.reply(prompt, gold if i in RIGHT else wrong)

    @staticmethod
    def reply(prompt: str, text: str) -> str:
        return fill_fields(prompt, text) if "[[ ## " in prompt else text


def run(server, world, out, *args):
    return cli("run", "--task", str(world / "pics.yaml"), "--model", "openai/scripted", "--api-base", server.base_url,
               "--out", str(out), "--strategy", "baseline", "--strategy", "cot", "--probe", "organ_pair", *args,
               env=FAST)  # fmt: skip


def report(done) -> dict:
    assert done.returncode == 0, done.stderr
    folder = done.stdout.strip().splitlines()[-1].removeprefix("Run folder: ")
    got = cli("report", folder, "--format", "json")
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout) | {"_folder": folder}


@pytest.fixture(scope="module")
def ran(world, tmp_path_factory):
    """One run of the planted world with both image probes, then the same command after one image
    changed: (task, vision, server, first report, calls of the first run, rerun's requests, report)."""
    out = tmp_path_factory.mktemp("runs")
    vision = Vision(world)
    with ScriptedServer(reply=None, vision=vision) as server:
        first = report(run(server, world, out))
        calls = server.calls
        paint(world / "img" / "p3.png", 3, shade=60)  # items 3 and 13 show it
        vision.refresh()
        again = report(run(server, world, out))
        rerun = list(zip(server.requests[calls:], server.images[calls:], strict=True))
    task = load_task(str(world / "pics.yaml"))
    return task, vision, first, calls, rerun, again


def score(data, config, split="test", task="pics"):
    (row,) = [r for r in data["rows"] if r["task"] == task and r["config_id"].startswith(config) and r["split"] == split]
    return row["score"]


def test_the_score_of_an_image_task_equals_the_plant_and_every_request_carried_the_items_own_image(ran):
    task, vision, data, *_ = ran
    assert vision.bad == []
    for split in ("val", "test"):
        ids = [int(ex.id) for ex in task.examples(split)]
        planted = sum(i in RIGHT for i in ids) / len(ids)
        for config in ("baseline", "cot"):
            assert score(data, config, split) == pytest.approx(planted)
    # blind asks are exactly the noimage probe's: one per val and test item, per config
    assert vision.blind_asks == 2 * (len(task.examples("val")) + len(task.examples("test")))


def test_no_image_gives_the_blind_score_and_organ_pairs_score_as_planted(ran):
    task, _, data, *_ = ran
    test = [int(ex.id) for ex in task.examples("test")]
    for config in ("baseline", "cot"):
        rows = {r["probe"]: r for r in data["robustness"] if r["config_id"].startswith(config) and r["split"] == "test"}
        blind, organ = rows["noimage"], rows["organ"]
        images = sorted({i % N_IMAGES for i in test})  # one organ pair per image, however many items show it
        assert blind["n"] == len(test) and organ["n"] == len(images)
        assert blind["probe_score"] == pytest.approx(sum(i in BLIND for i in test) / len(test))
        assert blind["source_score"] == pytest.approx(sum(i in RIGHT for i in test) / len(test))
        assert organ["probe_score"] == pytest.approx(sum(k in ORGAN_OK for k in images) / len(images))
        assert organ["yes_score"] == 1.0
    # the robust score needs the item and both halves of its image's organ pair right; noimage is not part of it
    (robust,) = [r for r in data["robust"] if r["task"] == "pics"]
    chosen = robust["config_id"]
    assert robust["robust_score"] == pytest.approx(
        sum(i in RIGHT and i % N_IMAGES in ORGAN_OK for i in test) / len(test)
    ), chosen


def test_changing_one_image_asks_again_exactly_the_items_that_show_it(ran):
    task, vision, first, calls, rerun, again = ran
    assert vision.bad == []
    scored = {ex.id for s in ("val", "test") for ex in task.examples(s)}
    showing = [i for i in (3, 13) if str(i) in scored]
    assert showing  # the plant: at least one scored item shows the repainted image
    new = vision.digest[3]
    # every call of the second run is about the new image: each item showing it and the image's
    # one organ pair, under each config; the blind questions did not change, so they are not asked
    assert rerun and all(shown == [new] for _, shown in rerun)
    assert len(rerun) == (len(showing) + 2) * 2
    assert score(again, "cot") == score(first, "cot")


def test_a_compiled_image_program_keeps_its_image_demos_and_answers_a_new_image(world, tmp_path):
    vision = Vision(world)
    with ScriptedServer(reply=None, vision=vision) as server:
        made = promptopt.compile("openai/scripted", str(world / "pics.yaml"), "cot", tmp_path / "prog",
                                 optimizer="bootstrap", runs=tmp_path / "runs", api_base=server.base_url)  # fmt: skip
        assert made is not None
        saved = (tmp_path / "prog" / "program.json").read_text()
        assert "data:image/png;base64," in saved  # the demos' images travel with the program
        program = promptopt.load(tmp_path / "prog")
        fresh = tmp_path / "new.png"
        paint(fresh, 5, shade=120)
        before = server.calls
        vision.digest[5] = image_ref(str(fresh), tmp_path, "test").digest  # item 5's question, on the new image
        out = program(image=str(fresh), question="Is finding number 5 present?")
        sent = server.images[before:]
    assert out.answer == "no"  # item 5 is answered right (gold "no") when its image is the one sent
    assert len(sent) == 1 and sent[0][-1] == vision.digest[5]
    assert len(sent[0]) > 1  # the demos' images went with it
    assert vision.bad == []


def test_vqa_rad_keeps_test_images_out_of_its_demo_pool_and_says_how_many_it_shares():
    from promptopt.tasks import image_overlap

    task = load_task("vqa_rad")
    assert len(task.examples("test")) == 272  # the official test set's closed questions
    shared = image_overlap(task)
    assert shared["in_train"] == 0 and shared["in_other_source_items"] > 100
    yes_no = [ex for ex in task.examples("test") if ex.gold.lower() in ("yes", "no")]
    assert len(yes_no) == 251


def test_bad_image_input_is_refused_in_one_sentence_before_any_call(world, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(world, broken)
    (broken / "img" / "p4.png").unlink()
    unreadable = tmp_path / "unreadable"
    shutil.copytree(world, unreadable)
    (unreadable / "img" / "p5.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really")
    with ScriptedServer(reply=None, vision=Vision(world)) as server:
        base = ["run", "--model", "openai/scripted", "--api-base", server.base_url, "--out", str(tmp_path / "o")]
        missing, corrupt, text_only, gpt35, strategy = cli_many(
            [*base, "--task", str(broken / "pics.yaml")],
            [*base, "--task", str(unreadable / "pics.yaml")],
            ["run", "--task", str(world / "pics.yaml"), "--out", str(tmp_path / "o")],  # the embedded model
            ["run", "--task", str(world / "pics.yaml"), "--model", "openai/gpt-3.5-turbo", "--out", str(tmp_path / "o")],
            [*base, "--task", str(world / "pics.yaml"), "--strategy", "multi_agent"],
            env=FAST | {"OPENAI_API_KEY": "sk-test"},
        )
        assert server.calls == 0
    for done in (missing, corrupt, text_only, gpt35, strategy):
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "p4.png does not exist" in missing.stderr and "item 4" in missing.stderr
    assert "p5.png cannot be read as an image" in corrupt.stderr
    assert "reads text only" in text_only.stderr and "--api-base" in text_only.stderr
    assert "without vision" in gpt35.stderr
    assert "sends text only" in strategy.stderr and "cot" in strategy.stderr


def test_the_viewer_shows_each_example_with_the_image_the_model_was_sent(ran, world):
    import hashlib

    from fastapi.testclient import TestClient

    from promptopt.viewer import View, make_app

    *_, again = ran
    view = View(again["_folder"])
    run_id = view.runs()[0]["run_id"]
    (config,) = {c["config_id"] for c in view.configs(run_id) if c["task"] == "pics" and c["config_id"].startswith("cot")}
    records, _ = view.examples(run_id, again["rows"][0]["model"], "pics", config, "test")
    client = TestClient(make_app(again["_folder"], warm_up=False), base_url="http://127.0.0.1:8765")
    for r in records[:3]:
        page = client.get(f"/run/{run_id}/example/{r['id']}").text
        (src,) = re.findall(r"<img src='([^']+)'", page)
        served = client.get(src)
        assert served.status_code == 200 and served.headers["content-type"] == "image/png"
        i = int(r["example_id"])
        assert served.content == (world / "img" / f"p{i % N_IMAGES}.png").read_bytes()
        assert hashlib.sha256(served.content).hexdigest()[:16] in page  # the prompt as sent names the same digest
    assert client.get(f"/run/{run_id}/image/pics/{'0' * 16}").status_code == 404


def test_an_item_with_several_images_sends_each_of_them_in_order(tmp_path):
    import dspy

    from promptopt.signatures import as_text, signature_for

    for k in (1, 2):
        paint(tmp_path / f"v{k}.png", k)
    rows = [{"id": str(i), "views": ["v1.png", "v2.png"] if i % 2 else '["v2.png", "v1.png"]', "question": f"Q{i}?",
             "answer": "yes"} for i in range(12)]  # fmt: skip
    (tmp_path / "two.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = TASK.replace("name: pics", "name: two").replace("files: pics.jsonl, images: img", "files: two.jsonl")
    spec = spec.replace("inputs: {image: image, question: question}", "inputs: {images: views, question: question}")
    (tmp_path / "two.yaml").write_text(spec.replace("labels: {organ: organ}\n", "").replace("probes: [no_image]\n", ""))
    task = load_task(str(tmp_path / "two.yaml"))
    first, second = task.rows()[:2]
    digest = {k: image_ref(f"v{k}.png", tmp_path, "test").digest for k in (1, 2)}
    assert [r.digest for r in first.inputs["images"]] == [digest[2], digest[1]]  # a list given as JSON text
    assert [r.digest for r in second.inputs["images"]] == [digest[1], digest[2]]
    messages = dspy.ChatAdapter().format(signature_for(task), demos=[], inputs=as_text(second.inputs))
    parts = [p for m in messages if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image_url"]
    from promptopt.images import sent_digests

    assert sent_digests({"messages": [{"content": parts}]}) == [digest[1], digest[2]]
