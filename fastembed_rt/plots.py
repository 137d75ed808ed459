"""`fastembed-rt bench --plot`: each op's achieved rate against the ceiling it is measured against, both from
the same run (matplotlib, an optional dependency: pip install fastembed_rt[plot])."""

from __future__ import annotations

from pathlib import Path

from .benchmark import OpResult


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ValueError("--plot draws with matplotlib: pip install matplotlib (or fastembed_rt[plot])") from None
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def ops_chart(results: list[OpResult], ceilings: dict[str, float], title: str, path: str | Path) -> Path:
    """A roofline-style bullet chart: per op and implementation a bar of its rate and a mark at its ceiling, compute
    ops (GFLOP/s, GOP/s) and memory ops (GB/s) in two panels on log scales; the percent is written at each bar."""
    plt = pyplot()
    panels = [("compute", [r for r in results if r.unit != "GB/s"]), ("memory", [r for r in results if r.unit == "GB/s"])]
    panels = [(name, rows) for name, rows in panels if rows]
    height = max(3.0, 0.32 * max(len(rows) for _, rows in panels) + 1.5)
    figure, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), height), squeeze=False)
    colors = {}
    for axis, (name, rows) in zip(axes[0], panels):
        keys = [(r.op, r.dtype, r.implementation) for r in rows]
        labels = [f"{r.op} {r.dtype} [{r.implementation}]" + (f"\n{r.shape}" if keys.count(k) > 1 else "")
                  for r, k in zip(rows, keys)]  # the shape where one op is measured on several
        positions = range(len(rows))
        for y, r in zip(positions, rows):
            color = colors.setdefault(r.implementation, f"C{len(colors)}")
            axis.barh(y, r.throughput, color=color, height=0.7, label=r.implementation)
            ceiling = r.throughput * 100 / r.ceiling_percent if r.ceiling_percent > 0 else None
            if ceiling:
                axis.plot([ceiling, ceiling], [y - 0.42, y + 0.42], color="black", linewidth=2)
            axis.text(r.throughput, y, f" {r.ceiling_percent:.0f}%", va="center", fontsize=7)
        axis.set_yticks(list(positions), labels, fontsize=7)
        axis.invert_yaxis()
        axis.set_xscale("log")
        units = sorted({r.unit for r in rows})
        axis.set_xlabel(" / ".join(units) + " (bar: achieved; black mark: this run's ceiling)")
        bounds = ", ".join(f"{k} {v:,.0f}" for k, v in ceilings.items() if (k == "GB/s") == (name == "memory"))
        axis.set_title(f"{name}-bound ops; ceilings: {bounds}", fontsize=8)
        handles = {h.get_label(): h for h in axis.get_legend_handles_labels()[0]}
        axis.legend(handles.values(), handles.keys(), fontsize=7, loc="best")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
