"""nbval settings: stderr (progress bars, warnings) is never compared."""


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "text/html", "application/javascript", "application/vnd.jupyter.widget-view+json")
