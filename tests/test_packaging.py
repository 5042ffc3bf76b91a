import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _string_arrays(text: str) -> dict[str, dict[str, list[str]]]:
    """The string arrays of a TOML file, {table: {key: [strings]}}: enough for pyproject's dependency lists."""
    tables: dict[str, dict[str, list[str]]] = {}
    table, key, items = "", None, []
    for line in text.splitlines():
        line = re.match(r'(?:[^"#]|"[^"]*")*', line).group(0).strip()  # drop a comment outside strings
        if key is None:
            if re.fullmatch(r"\[[^\[\]]+\]", line):
                table = line[1:-1].strip()
            elif m := re.fullmatch(r'([\w"-]+)\s*=\s*\[(.*)', line):
                key, line, items = m.group(1).strip('"'), m.group(2), []
        if key is not None:
            items += re.findall(r'"([^"]*)"', line)
            if line.rstrip().endswith("]"):
                tables.setdefault(table, {})[key] = items
                key = None
    return tables


def _pyproject() -> dict:
    """pyproject.toml's [project] table: tomllib (3.11+), else tomli, else :func:`_string_arrays`."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:
        try:
            import tomli as tomllib
        except ImportError:
            arrays = _string_arrays(text)
            return {**arrays["project"], "optional-dependencies": arrays["project.optional-dependencies"]}
    return tomllib.loads(text)["project"]


def _name(req: str) -> str:
    return re.split(r"[<>=!~ ;\[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = _pyproject()
    wanted = {_name(r): r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-e")}
    assert listed == wanted


def test_pyproject_reads_without_tomllib(monkeypatch):
    """Python 3.10 (requires-python) has no tomllib: the fallback finds the same dependency lists."""
    with_tomllib = _pyproject() if sys.version_info >= (3, 11) else None
    monkeypatch.setitem(sys.modules, "tomllib", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "tomli", None)
    project = _pyproject()
    assert "torch" in map(_name, project["dependencies"]) and "pytest" in map(_name, project["optional-dependencies"]["dev"])
    if with_tomllib is not None:
        assert project["dependencies"] == with_tomllib["dependencies"]
        assert project["optional-dependencies"] == with_tomllib["optional-dependencies"]


def test_notebooks_are_committed_without_outputs():
    books = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert books, "the course has notebooks"
    for nb in books:
        cells = json.loads(nb.read_text())["cells"]
        dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
        assert not dirty, f"{nb.name}: cells {dirty} hold outputs; strip them (jupyter nbconvert --clear-output --inplace)"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = [l.strip() for l in (ROOT / ".ci/run").read_text().splitlines() if l.strip() and not l.startswith(("#", "set ", "cd "))]
    assert ci == ["make test"] and "make test" in readme and "make demo" in readme
