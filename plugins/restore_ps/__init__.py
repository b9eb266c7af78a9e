"""PS plugin: Partial filter-Sharing layers (Park & Cho, WACV 2025) and the CARN/DRRN/SRFBN
networks built on them, plus converters for the authors' released checkpoints.

Importing this module registers the ``partial_filter`` sharing scheme, the archs ``CARN_PS``,
``CARN``, ``DRRN_PS``, ``DRRN``, ``SRFBN_S_PS``, ``SRFBN_S`` and the converters ``ps_carn``,
``ps_drrn``, ``ps_srfbn``.
"""

from restore_ps import carn, convert, drrn, srfbn  # noqa: F401  (register archs and converters)
from restore_ps.layers import PSConv2d, build_kernel
from restore_ps.scheme import PartialFilterSharing

__all__ = ["PSConv2d", "PartialFilterSharing", "build_kernel"]
