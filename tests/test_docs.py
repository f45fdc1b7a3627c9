"""The guides in docs/ and the README against the code they describe: every setting with
its default, the library's signatures and options, the methods, the backbones, the files
of a run, the rendered tables and the tools. Each test derives the truth from the code, so
a change on either side that the other does not follow fails here."""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import inspect
import json
import re
from pathlib import Path

import pytest

from camlab.core import settings
from camlab.report import results

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
SCRIPTS = ("train_cam.py", "visualize_cam.py", "evaluate_cam.py")
NO_DEFAULT = object()


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text under the Markdown heading `heading` (its exact line), up to the next
    heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n") + len(heading) + 1
    following = re.search(rf"^#{{1,{level}}} ", text[start:], re.M)
    return text[start:start + following.start()] if following else text[start:]


def table_after(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with `header` (cells
    stripped; the header and the --- line dropped)."""
    lines = text[text.index(header):].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def code_names(text: str) -> list[str]:
    """The names in `backticks` of `text`, in order."""
    return re.findall(r"`([^`]+)`", text)


# ---- settings ----

@pytest.mark.parametrize("script", SCRIPTS)
def test_the_settings_guide_lists_every_setting_with_its_default(script):
    """docs/settings.md has a row per constant of the script, in the file's order, with its
    default as a Python literal: a setting added, removed, renamed or given another default
    in the script, or in the guide alone, fails."""
    rows = table_after(section(read(DOCS / "settings.md"), f"### `{script}`"), "| setting |")
    documented = [(name.strip("`"), ast.literal_eval(default.strip("`")))
                  for name, default, _ in rows]
    declared = [(name, setting.default)
                for name, setting in settings.declared_settings(ROOT / script).items()]
    assert documented == declared


def test_the_settings_guide_states_each_scripts_seed():
    """SEED has its own default in each script (train_cam.py 1234, the others 0); the
    guide's sentence about it names each one."""
    text = " ".join(read(DOCS / "settings.md").split())
    for script in SCRIPTS:
        seed = settings.declared_settings(ROOT / script)["SEED"].default
        assert f"in `{script}` ({seed})" in text, script


def test_the_settings_guide_shows_each_preset_as_its_file():
    rows = table_after(read(DOCS / "settings.md"), "| preset | sets |")
    files = sorted(path.stem for path in (ROOT / "presets").glob("*.json"))
    assert sorted(row[0].strip("`") for row in rows) == files
    for name, values in rows:
        preset = json.loads(read(ROOT / "presets" / f"{name.strip('`')}.json"))
        expected = [f"{key}={value if isinstance(value, str) else settings.shown(value)}"
                    for key, value in preset.items()]
        assert code_names(values) == expected, name


# ---- the library: docs/api.md ----

def doc_parameters(parameters: str) -> list[tuple[str, str, object]]:
    """(name, kind, default) of a signature as the page writes it, `a, b="x", *, c=None`."""
    args = ast.parse(f"def f({parameters}): pass").body[0].args
    positional = args.posonlyargs + args.args
    defaults = [NO_DEFAULT] * (len(positional) - len(args.defaults)) + [
        ast.literal_eval(node) for node in args.defaults]
    found = [(arg.arg, "positional", default) for arg, default in zip(positional, defaults,
                                                                        strict=True)]
    if args.vararg:
        found.append((args.vararg.arg, "*args", NO_DEFAULT))
    found += [(arg.arg, "keyword", NO_DEFAULT if node is None else ast.literal_eval(node))
              for arg, node in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    if args.kwarg:
        found.append((args.kwarg.arg, "**kwargs", NO_DEFAULT))
    return found


def code_parameters(function) -> list[tuple[str, str, object]]:
    """(name, kind, default) of a function's signature, `self` left out."""
    kinds = {inspect.Parameter.POSITIONAL_ONLY: "positional",
             inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
             inspect.Parameter.VAR_POSITIONAL: "*args",
             inspect.Parameter.KEYWORD_ONLY: "keyword",
             inspect.Parameter.VAR_KEYWORD: "**kwargs"}
    return [(name, kinds[parameter.kind],
             NO_DEFAULT if parameter.default is inspect.Parameter.empty else parameter.default)
            for name, parameter in inspect.signature(function).parameters.items()
            if name != "self"]


def documented_signatures() -> list[tuple[str, str]]:
    """[("camlab.score", "maps, *, boxes=None, ..."), ("Explainer.maps", ...), ...]: every
    signature the page writes, in its headings and in the Explainer table's rows."""
    text = read(DOCS / "api.md")
    found = re.findall(r"^#{3,4} `((?:camlab|Explainer)\.\w+)\((.*)\)(?: -> [^`]+)?`$", text,
                       re.M)
    for cell, _ in table_after(text, "| attribute or method |"):
        call = re.fullmatch(r"`(\w+)\((.*)\)`", cell)
        if call:
            found.append((f"Explainer.{call.group(1)}", call.group(2)))
    return found


def test_the_api_page_gives_every_public_function_its_true_signature():
    """Each `camlab.<name>(...)` heading, and each Explainer method the page writes with
    its arguments, has the names, kinds and defaults of inspect.signature."""
    import camlab
    from camlab import api

    documented = documented_signatures()
    names = {name for name, _ in documented}
    functions = {f"camlab.{name}" for name in camlab.__all__
                 if inspect.isfunction(getattr(camlab, name))}
    assert functions <= names, "every public function has its heading"
    assert {"Explainer.maps", "Explainer.top_k", "Explainer.images",
            "Explainer.predict"} <= names
    for name, parameters in documented:
        owner, attribute = name.split(".")
        code = getattr(api if owner == "camlab" else api.Explainer, attribute)
        assert doc_parameters(parameters) == code_parameters(code), name


def test_the_api_page_names_every_public_member_of_the_explainer():
    from camlab import api

    cells = [cell for cell, _ in table_after(read(DOCS / "api.md"), "| attribute or method |")]
    named = {name.split("(")[0] for cell in cells for name in code_names(cell)}
    public = {name for name in vars(api.Explainer) if not name.startswith("_")}
    # and the attributes __init__ sets
    public |= set(re.findall(r"self\.(\w+) = ", inspect.getsource(api.Explainer.__init__)))
    assert named == public


def test_the_api_page_lists_every_option_with_its_default():
    from camlab.maps.method_spec import Options

    rows = table_after(read(DOCS / "api.md"), "| option | default |")
    documented = [(name.strip("`"), ast.literal_eval(default.strip("`")))
                  for name, default, _ in rows]
    assert documented == [(field.name, field.default) for field in dataclasses.fields(Options)]
    for name, _, meaning in rows:  # and the setting it stands for
        assert f"(`{name.strip('`').upper()}`)" in meaning, name


# ---- methods, backbones, files ----

def test_the_backbones_named_are_the_models():
    from camlab.networks import models

    readme = re.search(r"^Backbones: (.*?)\n\n", read(README), re.S | re.M).group(1)
    guide = re.search(r"\*\*Backbones\*\* \(`BACKBONE`\): (.*?)\. Each", read(
        DOCS / "your_data.md"), re.S).group(1)
    for text in (readme, guide):
        assert sorted(code_names(text)) == sorted(models.BACKBONES)


def test_the_outputs_guide_shows_every_file_a_run_folder_holds():
    """The tree of docs/outputs.md names what train_cam.py writes and removes, the feature
    cache, the shards and every kind of file visualize and evaluate write (DERIVED_FILES:
    comparison.png among them)."""
    import train_cam
    from camlab.evaluate import shards
    from camlab.train import probe

    tree = read(DOCS / "outputs.md").split("```")[1]
    # The names in the tree's first column ("  heatmaps.png, cams.npz"), not its comments
    # (their lines run on further in).
    shown = [name for line in tree.splitlines()
             if (entry := re.match(r" {0,2}(\S.*?)(?:\s{2,}|$)", line))
             for name in entry.group(1).split(", ")]
    wanted = ["config.json", "weights.weights.h5", "model.keras", "history.csv", "curves.png",
              "backup/", f"{probe.CACHE_FOLDER}/", f"{shards.FOLDER}/", "*seeds_leaderboard*",
              *train_cam.DERIVED_FILES]
    assert [pattern for pattern in wanted if not any(
        fnmatch.fnmatch(name.rsplit("/", 1)[-1] or name, pattern.rstrip("/"))
        or name.endswith(pattern) for name in shown)] == []


def test_the_fixes_from_the_post_name_tests_that_exist():
    rows = table_after(read(DOCS / "reproduce.md"), "| the post's code | here | guarded by |")
    named = [name for row in rows for name in code_names(row[2])]
    assert len(named) >= 6
    source = "\n".join(read(path) for path in (ROOT / "tests").rglob("test_*.py"))
    assert [name for name in named if f"def {name}(" not in source] == []


def test_the_demo_guide_describes_the_network_the_code_builds():
    """docs/demo_design.md's description and decision name the design models.py builds and
    presets/demo.json trains: 16, 32, 64 channels, 10 epochs."""
    from camlab.networks import models

    text = " ".join(read(DOCS / "demo_design.md").split())
    widths = models.SMALL_VGG_WIDTHS
    epochs = json.loads(read(ROOT / "presets" / "demo.json"))["EPOCHS"]
    assert f"({', '.join(map(str, widths))} channels)" in text
    assert (f"the demo keeps the old design (2,2,2 convs, {'/'.join(map(str, widths))}, "
            f"{epochs} epochs)") in text


# ---- the rendered tables, the tools, the words ----

def test_maintainers_name_every_committed_copy_and_every_block_where_it_is():
    text = read(DOCS / "MAINTAINERS.md")
    copies = [(copy.strip("`"), [part for part in code_names(source) if "/" in part], command)
              for copy, source, command in table_after(text, "| committed copy |")]
    assert copies == [(f"docs/results/{source.copy}",
                       [f"outputs/{part}" for part in source.source.split(", ")],
                       f"`{source.command}`") for source in results.SOURCES]
    blocks = {name.strip("`"): document for name, document, _ in
              table_after(text, "| block | document |")}
    assert sorted(blocks) == sorted(results.RENDERERS)
    for name, document in blocks.items():
        assert f"<!-- results:{name} -->" in read(ROOT / document), name


def test_the_readme_names_every_tool_of_requirements_dev():
    install = section(read(README), "## Install")
    tools = [re.split(r"[<>=\[ ]", line)[0] for line in read(
        ROOT / "requirements-dev.txt").splitlines() if line.strip() and not line.startswith("#")]
    assert len(tools) >= 5
    assert [tool for tool in tools if tool not in install] == []


def user_documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_the_blog_post_is_the_post_never_the_seed():
    """`SEED` is a setting; the blog post the project reproduces is "the post"."""
    for path in user_documents():
        found = re.findall(r"\bthe seed(?![-\w])|\bseed post\b|\bthe seed's\b", read(path),
                           re.I)
        assert found == [], path.name


def test_the_documents_carry_no_issue_numbers():
    for path in user_documents():
        assert re.findall(r"\bissues? #?\d+", read(path), re.I) == [], path.name


def test_gap_and_f_at_w_are_spelled_out_where_the_readme_first_uses_them():
    text = read(README)
    assert text.index("global average pooling (GAP)") <= text.index("GAP")
    assert "the feature maps times class c's weights" in section(text, "## Methods")
    assert "F @ W" not in text[:text.index("## Methods")]


def test_the_readmes_settings_example_is_the_scripts_own_lines():
    block = read(README).split("```text\n# the top of train_cam.py\n")[1].split("```")[0]
    script = read(ROOT / "train_cam.py").splitlines()
    assert block.splitlines() and all(line in script for line in block.splitlines())


def test_the_readmes_quoted_times_are_the_committed_results():
    """The README quotes three times in its prose; each is the one the committed files
    give (the demo's wall clock, and the post's run as a fine-tune and as a probe)."""
    files = results.load_results(ROOT / results.RESULTS)
    text = " ".join(read(README).split())
    assert f"{files['bench.json']['demo_seconds']['value']:.0f} s on a 2-core AMD EPYC" in text
    estimate = results.render_no_gpu(files)[0]
    hours = re.search(r"\(about (\d+) hours\)", estimate).group(1)
    minutes = re.search(r"about (\d+) minutes\.$", estimate).group(1)
    assert f"about {hours} hours, from a measured speed" in text
    assert f"in about {minutes} minutes" in text


def test_the_makefile_scores_the_leaderboards_seven_methods():
    """`make demo-evaluate`, `make cause` and the seeds' targets score SEED_METHODS: the
    seven of results.LEADERBOARD_METHODS, which the README's command and the bench quote."""
    from camlab.report import results

    default = re.search(r"^SEED_METHODS \?= (.+)$", read(ROOT / "Makefile"), re.M).group(1)
    assert default == results.LEADERBOARD_METHODS and len(default.split(",")) == 7


def test_the_seeds_boards_files_are_named_by_the_makefiles_seed_images():
    """Both seeds' targets score SEED_IMAGES images a run, which names the files `make
    results` copies (results.SEED_IMAGES)."""
    from camlab.report import results

    makefile = read(ROOT / "Makefile")
    images = int(re.search(r"^SEED_IMAGES \?= (\d+)", makefile, re.M).group(1))
    assert images == results.SEED_IMAGES
    assert makefile.count("--MAX_IMAGES=$(SEED_IMAGES)") == 2  # demo-seeds and cause-seeds
    seeds = [s.source for s in results.SOURCES if "seeds" in s.copy]
    assert seeds == [f"demo_sN/seeds_leaderboard_first{images}.json",
                     f"cause_sN/seeds_leaderboard_first{images}.json"]
