"""Fallwerk engine: parsing, deploying and running BPMN models. Never imports Flask."""

from . import spiff_fixes as _spiff_fixes

_spiff_fixes.apply()
