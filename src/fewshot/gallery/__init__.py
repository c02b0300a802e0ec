"""The gallery: classes registered from one or a few images, recognised later, unknowns refused.

See :class:`Gallery`; the parts are :mod:`~fewshot.gallery.storage` (SQLite, the source of
truth), :mod:`~fewshot.gallery.index` (FAISS search), :mod:`~fewshot.gallery.decision` (the
method's own rule), :mod:`~fewshot.gallery.calibration` (the unknown threshold) and
:mod:`~fewshot.gallery.model` (the bound model).
"""
from fewshot.gallery.calibration import Calibration
from fewshot.gallery.decision import Match, Recognition
from fewshot.gallery.gallery import AddResult, ClassInfo, Gallery
from fewshot.gallery.model import GalleryModel

__all__ = ["AddResult", "Calibration", "ClassInfo", "Gallery", "GalleryModel", "Match", "Recognition"]
