"""nbval settings: stderr (progress bars, warnings) is never compared.

Notebook 04 (GILL) needs the optional zoo model ``gill`` (``tiger zoo build --only gill``), which
the CI's build leaves out until its 90-minute budget has room; with the model built, nbval runs
it too (it passes in about 3 minutes)."""
from tigerlib.config import get_settings

collect_ignore = [] if (get_settings().checkpoint_dir / "gill" / "manifest.json").is_file() else ["04_gill_mapping_to_diffusion.ipynb"]


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "text/html", "application/javascript", "application/vnd.jupyter.widget-view+json")
