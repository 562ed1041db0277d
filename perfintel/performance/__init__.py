"""Forecasts and capacity plans over stored metrics.

The models in :mod:`perfintel.analysis` are pure (arrays in, results out);
this package is the orchestration around them: it loads a regular history
from any :class:`~perfintel.storage.base.SampleReader` (:mod:`.history`),
runs the models per series (:mod:`.forecasting`, :mod:`.capacity`) and
optionally writes forecasts back through the store. The HTTP adapter is
:mod:`perfintel.api.performance`.

Nothing is re-exported here: import from the submodules.
"""
