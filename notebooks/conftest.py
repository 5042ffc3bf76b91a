"""nbval settings: stderr (progress bars, warnings) is never compared, nor widget and HTML output."""


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "text/html", "application/javascript", "application/vnd.jupyter.widget-view+json")
