"""Figures from opd stages (see opd_runs.py), shared by plot_run, compare_runs and report.

Every figure function takes `entries`, a list of (label, Stage): one entry draws one run (series
told apart by colour), several overlay runs (a colour per run, series told apart by line style).
Per-step series longer than 100 rows are drawn raw (faint) under a centred moving average; the
window is `window` rows, or about 1/50 of the run when `window` is None.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from opd_runs import metric_title, safe_filename  # noqa: E402

STYLES = ["-", "--", ":", "-."]
# Positive, heavy-tailed metrics drawn on a log axis when they span more than two decades.
LOG_METRICS = {"grad_norm", "kl_k3"}


def auto_window(n, window=None):
    if window is not None:
        return max(1, int(window))
    return max(1, round(n / 50)) if n > 100 else 1


def smooth(y, w):
    """Centred moving average over the finite values of y (NaN where a window has none)."""
    if w <= 1 or y.size == 0:
        return y
    ok = np.isfinite(y)
    cs = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
    cn = np.concatenate([[0], np.cumsum(ok)])
    i = np.arange(y.size)
    lo = np.clip(i - w // 2, 0, y.size)
    hi = np.clip(i - w // 2 + w, 0, y.size)
    cnt = cn[hi] - cn[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (cs[hi] - cs[lo]) / cnt
    out[cnt == 0] = np.nan
    return out


def draw_series(ax, steps, y, window, color, style="-", label=None):
    """Draws one metric column; False when it holds no finite value."""
    if y is None:
        return False
    ok = np.isfinite(y)
    if not ok.any():
        return False
    if ok.sum() < 0.5 * y.size:  # logged now and then (evaluations): points joined by lines
        ax.plot(steps[ok], y[ok], style, color=color, marker="o", ms=4, label=label)
        return True
    w = auto_window(y.size, window)
    if w > 1:
        ax.plot(steps, y, "-", color=color, alpha=0.25, lw=0.7)
        ax.plot(steps, smooth(y, w), style, color=color, lw=1.5, label=label)
    else:
        ax.plot(steps, y, style, color=color, lw=1.5, label=label,
                marker="." if y.size <= 50 else None)
    return True


def maybe_log(ax, name, entries):
    if name not in LOG_METRICS:
        return
    vals = np.concatenate([st.metrics[name] for _, st in entries if name in st.metrics] or [[]])
    vals = vals[np.isfinite(vals)]
    if vals.size and vals.min() > 0 and vals.max() / vals.min() > 100:
        ax.set_yscale("log")


def smoothing_note(entries, window):
    w = max(auto_window(st.steps.size, window) for _, st in entries)
    return f" (faint: per step; bold: moving average over {w} steps)" if w > 1 else ""


def metric_figure(entries, name, path, window=None):
    """One metric against step; False (nothing written) when no entry has a finite value."""
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for i, (label, st) in enumerate(entries):
        drawn |= draw_series(ax, st.steps, st.metrics.get(name), window, f"C{i % 10}",
                             label=label if len(entries) > 1 else None)
    if not drawn:
        plt.close(fig)
        return False
    maybe_log(ax, name, entries)
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    ax.set_title(metric_title(name), fontsize=10)
    ax.grid(alpha=0.3)
    if len(entries) > 1:
        ax.legend(fontsize=8)
    fig.text(0.99, 0.01, smoothing_note(entries, window).strip(" ()"), ha="right", fontsize=7,
             color="gray")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _entropy_diff(st):
    hp, hq = st.metrics.get("entropy_student"), st.metrics.get("entropy_teacher")
    return None if hp is None or hq is None else hp - hq


def _col(name):
    return lambda st: st.metrics.get(name)


# The paper-style panels (p: student, q: teacher): (title, [(series label, column getter)]).
PANELS = [
    ("overlap ratio |S_p ∩ S_q| / k", [("ratio", _col("overlap_ratio"))]),
    ("overlap mass (probability on the shared top-k)",
     [("under p (student)", _col("overlap_mass_student")),
      ("under q (teacher)", _col("overlap_mass_teacher"))]),
    ("entropy gap (nats)",
     [("H(p) - H(q), step means", _entropy_diff), ("|H(q) - H(p)|, per token", _col("entropy_gap"))]),
    ("overlap-token advantage", [("advantage", _col("overlap_advantage"))]),
    ("held-out accuracy", None),  # drawn by _accuracy_panel
    ("reverse KL estimates (nats)",
     [("k1", _col("kl_k1")), ("k3", _col("kl_k3")), ("top-k", _col("kl_topk")),
      ("exact", _col("kl_full"))]),
    ("gradient norm", [("grad norm", _col("grad_norm"))]),
    ("entropies (nats)", [("H(p) student", _col("entropy_student")),
                          ("H(q) teacher", _col("entropy_teacher"))]),
]
PANEL_METRICS = {"overlap_ratio", "overlap_mass_student", "overlap_mass_teacher",
                 "overlap_advantage", "entropy_gap", "kl_k1", "kl_topk", "kl_full"}


def has_panel_data(st):
    return any(st.has(m) for m in PANEL_METRICS)


def accuracy_points(st):
    """Held-out accuracy as (steps, values): results.json's initial value at step 0, the logged
    evaluations, and results.json's final value at the last step."""
    pts = {}
    r = st.results or {}
    if isinstance(r.get("accuracy_student_initial"), (int, float)):
        pts[0] = float(r["accuracy_student_initial"])
    col = st.metrics.get("eval_accuracy")
    if col is not None:
        for s, v in zip(st.steps, col):
            if np.isfinite(v):
                pts[int(s)] = float(v)
    if isinstance(r.get("accuracy_student_final"), (int, float)):
        last = int(r.get("steps", st.steps[-1] if st.steps.size else 0))
        pts[last] = float(r["accuracy_student_final"])
    ks = sorted(pts)
    return np.array(ks), np.array([pts[k] for k in ks])


def _accuracy_panel(ax, entries, window, multi):
    drawn = False
    for i, (label, st) in enumerate(entries):
        c = f"C{i % 10}"
        xs, ys = accuracy_points(st)
        if xs.size:
            ax.plot(xs, ys, "-", color=c, marker="o", ms=4, label=None if multi else "held-out")
            drawn = True
        teacher = (st.results or {}).get("accuracy_teacher")
        if isinstance(teacher, (int, float)):
            ax.axhline(teacher, color=c if multi else "C1", ls=":", lw=1.2,
                       label=None if multi else "teacher (held-out)")
            drawn = True
        drawn |= draw_series(ax, st.steps, st.metrics.get("rollout_accuracy"), window,
                             c if multi else "C2", "--", None if multi else "rollouts (train)")
    if multi:
        return drawn, [("held-out", "-"), ("teacher", ":"), ("rollouts (train)", "--")]
    return drawn, None


def panel_figure(entries, path, window=None):
    """The paper-style diagnostics of one or more distill stages on a 2 x 4 grid."""
    multi = len(entries) > 1
    fig, axes = plt.subplots(2, 4, figsize=(18, 7.5))
    for ax, (title, series) in zip(axes.flat, PANELS):
        if series is None:
            drawn, style_legend = _accuracy_panel(ax, entries, window, multi)
        else:
            style_legend = []
            for j, (slabel, get) in enumerate(series):
                ls = STYLES[j % len(STYLES)]
                hit = False
                for i, (_, st) in enumerate(entries):
                    color = f"C{i % 10}" if multi else f"C{j}"
                    hit |= draw_series(ax, st.steps, get(st), window, color, ls if multi else "-",
                                       None if multi else slabel)
                if hit:
                    style_legend.append((slabel, ls))
            drawn = bool(style_legend)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if not drawn:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes,
                    color="gray")
            continue
        if title == "gradient norm":
            maybe_log(ax, "grad_norm", entries)
        if "gap" in title or "advantage" in title:
            ax.axhline(0, color="black", lw=0.6)
        if multi and style_legend and len(style_legend) > 1:
            handles = [Line2D([], [], color="gray", ls=ls) for _, ls in style_legend]
            ax.legend(handles, [s for s, _ in style_legend], fontsize=7)
        elif not multi and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if multi:
        handles = [Line2D([], [], color=f"C{i % 10}", lw=2) for i in range(len(entries))]
        fig.legend(handles, [lab for lab, _ in entries], loc="lower center",
                   ncol=min(len(entries), 6), fontsize=9)
    fig.suptitle(("distillation diagnostics" if multi else f"{entries[0][0]}: diagnostics")
                 + smoothing_note(entries, window), fontsize=11)
    fig.tight_layout(rect=(0, 0.05 if multi else 0, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def heatmap_figure(st, label, path, window=None):
    """Each per-position family as a heat map (relative position in the response against step);
    False when the stage has none."""
    fams = st.position_data()
    if not fams or st.steps.size == 0:
        return False
    w = auto_window(st.steps.size, window)
    fig, axes = plt.subplots(len(fams), 1, figsize=(9, 3.2 * len(fams)), squeeze=False)
    s = st.steps.astype(float)
    # Cell edges halfway between logged steps (steps need not be evenly spaced).
    mid = (s[1:] + s[:-1]) / 2 if s.size > 1 else np.array([])
    xe = np.concatenate([[s[0] - 0.5], mid, [s[-1] + 0.5]])
    for ax, (base, (buckets, arr)) in zip(axes[:, 0], sorted(fams.items())):
        nb = max(buckets) + 1
        grid = np.vstack([smooth(row, w) for row in arr])
        ye = np.array([b / nb for b in buckets] + [(buckets[-1] + 1) / nb])
        if len(buckets) != nb:  # missing buckets: draw at their index spacing anyway
            ye = np.arange(len(buckets) + 1) / len(buckets)
        mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(grid), shading="flat", cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="nats" if "entropy" in base else base)
        ax.set_ylabel("relative position\nin the response")
        ax.set_xlabel("step")
        ax.set_title(f"{label}: {metric_title(base)} by position "
                     f"({len(buckets)} buckets{'' if w == 1 else f', moving average over {w} steps'})",
                     fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def stage_figures(st, label, out, window=None):
    """Every figure of one stage under out/: a PNG per metric with a value, and for a distill
    stage panel.png and (with per-position data) entropy_by_position.png. Returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    entries = [(label, st)]
    for name in sorted(st.metrics):
        p = out / f"{safe_filename(name)}.png"
        if metric_figure(entries, name, p, window):
            written.append(p)
    if has_panel_data(st):
        p = out / "panel.png"
        panel_figure(entries, p, window)
        written.append(p)
        p = out / "entropy_by_position.png"
        if heatmap_figure(st, label, p, window):
            written.append(p)
    return written


def overlay_figures(entries, out, metrics=None, window=None):
    """Overlays of one stage of several runs under out/: a PNG per metric (every metric some run
    logged, or `metrics`) and panel.png of the distill runs. Returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    names = metrics or sorted({m for _, st in entries for m in st.metrics})
    written = []
    for name in names:
        p = out / f"{safe_filename(name)}.png"
        if metric_figure(entries, name, p, window):
            written.append(p)
    distill = [(lab, st) for lab, st in entries if has_panel_data(st)]
    if distill:
        p = out / "panel.png"
        panel_figure(distill, p, window)
        written.append(p)
    return written
