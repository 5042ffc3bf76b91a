"""nbval settings: stderr (progress bars, warnings) is never compared.

Notebook 04 (GILL) needs the optional zoo model ``gill`` (``tiger zoo build --only gill``), which
the CI's build leaves out until its 90-minute budget has room; with the model built, nbval runs
it too (it passes in about 3 minutes).

Notebook 05 (retrieve or generate) is left out of nbval for now: its benchmark cell took 689 s
in its one run (cores shared with a zoo build), over the 6-minute target and beyond what the
CI budget has room for; run it by hand (`pytest --nbval-lax notebooks/05_unified_decision.ipynb`)."""
from tigerlib.config import get_settings

collect_ignore = ["05_unified_decision.ipynb"]
if not (get_settings().checkpoint_dir / "gill" / "manifest.json").is_file():
    collect_ignore.append("04_gill_mapping_to_diffusion.ipynb")


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "text/html", "application/javascript", "application/vnd.jupyter.widget-view+json")
