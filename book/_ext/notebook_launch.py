"""Launch buttons that open what they point at.

Colab opens a GitHub file only if it is an ``.ipynb``. The chapters are MyST Markdown
notebooks, so sphinx-book-theme's Colab link for them opens nothing; this extension drops
it. A chapter keeps its Binder button, whose JupyterLab opens Markdown notebooks through
jupytext, and the training notebook, a real ``.ipynb`` that installs the package itself,
keeps both.
"""

from sphinx.application import Sphinx


def drop_colab_for_markdown(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            group["buttons"] = [
                button
                for button in group["buttons"]
                if button.get("text") != "Colab" or button.get("url", "").endswith(".ipynb")
            ]


def setup(app: Sphinx) -> dict:
    # after sphinx-book-theme's add_launch_buttons (priority 501) has built the buttons
    app.connect("html-page-context", drop_colab_for_markdown, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
