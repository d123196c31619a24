"""The router kind's assignment, for code that imported it from here (it lives in ``opsloop.client``).

    router = Router()                                   # one per process
    call = router.route(request_id, "router-core")      # arm, version, propensity, model, model propensity
    ... call the model ...
    record_observation(component=f"router:{call.model}", policyVersion=call.policy_version,
                       arm=call.arm, propensity=call.model_propensity, ...)
"""

from __future__ import annotations

from ..client import PolicyClient, RoutedCall, Router

__all__ = ["PolicyClient", "RoutedCall", "Router"]
