"""One bibliography in the PDF.

Sphinx's LaTeX builder gathers every citation into one bibliography at the end of the
document (``BibliographyTransform``), which LaTeX sets as an unnumbered chapter of its own. The
page that held the citations in the HTML book, ``bibliography``, is left behind as a numbered
chapter with only its heading and one sentence; this transform removes what is left of it.
"""

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

PAGE = "bibliography"


class DropEmptiedBibliographyPage(SphinxPostTransform):
    builders = ("latex",)
    default_priority = 760  # after the citations have been gathered, at 750

    def apply(self, **kwargs) -> None:
        for start in list(self.document.findall(addnodes.start_of_file)):
            if start.get("docname") == PAGE and not any(True for _ in start.findall(nodes.citation)):
                start.parent.remove(start)


def setup(app: Sphinx) -> dict:
    app.add_post_transform(DropEmptiedBibliographyPage)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
