"""One PNG writer for every report plot (matplotlib's Agg backend, imported lazily)."""

from __future__ import annotations

import io
from typing import Any

DPI = 110


def figure_png(fig: Any) -> bytes:
    """``fig`` as PNG bytes (no software metadata, so equal figures give equal bytes); closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
