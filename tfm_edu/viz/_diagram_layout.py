"""Block diagrams as data: nodes (boxes), edges (arrows) and frames ("x N layers"), laid out in
inches, then drawn with matplotlib. `tfm_edu.viz.diagrams` builds the architectures from these.

A `Column` stacks boxes bottom to top, as in the paper's figure 1; `Column.sublayer` adds one
residual block in post-LN or pre-LN order, with the residual arrow from a split point on the
stream to the "+" node, so the arrow bypasses the sublayer (and, in pre-LN, its LayerNorm).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from tfm_edu.viz import _common as common

KINDS = ("io", "embed", "norm", "attention", "ffn", "add", "split", "linear", "head")
FILL = {
    "io": "#ffffff",
    "embed": "#f8cfdc",  # pink: embeddings and positions
    "norm": "#fff1a8",  # yellow: LayerNorm
    "attention": "#fbd3a6",  # orange: attention, as in the paper's figure
    "ffn": "#bfe0f7",  # blue: feed-forward
    "add": "#ffffff",
    "split": "#2e7d32",
    "linear": "#dcdcf5",  # lilac: linear maps to the vocabulary / classes
    "head": "#c9e7c9",  # green: task heads
}
EDGE_COLOR = {"main": "#333333", "residual": "#2e7d32", "memory": "#7b3fa0"}
HEIGHT = {"add": 0.3, "split": 0.0, "io": 0.36, "norm": 0.34}
BOX_HEIGHT, NOTE_HEIGHT, GAP, SPLIT_GAP = 0.38, 0.19, 0.3, 0.2
LABEL_SIZE, NOTE_SIZE, SHAPE_SIZE = 10.0, 8.0, 8.5


@dataclass(frozen=True)
class Node:
    """One box (or "+" circle, or split point) centred at (x, y); sizes in inches."""

    key: str
    label: str
    kind: str
    x: float
    y: float
    width: float
    height: float
    note: str = ""  # a second, smaller line: the mask of an attention box, details of a head

    @property
    def top(self) -> float:
        return self.y + self.height / 2

    @property
    def bottom(self) -> float:
        return self.y - self.height / 2


@dataclass(frozen=True)
class Edge:
    """An arrow from one node to another. kind: "main" (the stream), "residual", "memory"."""

    source: str
    target: str
    kind: str = "main"
    label: str = ""  # the tensor's shape on this arrow, e.g. "(B, T, D)"
    via_x: float | None = None  # x of the vertical run of a residual or memory arrow


@dataclass(frozen=True)
class Frame:
    """A dashed frame around repeated layers, labelled e.g. "x 2 layers"."""

    label: str
    members: tuple[str, ...]
    right: float  # x of the frame's right side (past the residual arrows)


@dataclass(frozen=True)
class Diagram:
    """A whole block diagram: what `draw` draws and what tests read."""

    title: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    frames: tuple[Frame, ...] = ()

    def node(self, key: str) -> Node:
        for node in self.nodes:
            if node.key == key:
                return node
        raise KeyError(f"no node {key!r}; nodes are {[n.key for n in self.nodes]}")

    def path(self, start: str, end: str, kinds: tuple[str, ...] = ("main",)) -> list[str]:
        """Node keys on the shortest path from start to end along edges of the given kinds."""
        before: dict[str, str | None] = {start: None}
        queue = deque([start])
        while queue:
            key = queue.popleft()
            if key == end:
                keys = [key]
                while before[keys[-1]] is not None:
                    keys.append(before[keys[-1]])
                return keys[::-1]
            for edge in self.edges:
                if edge.source == key and edge.kind in kinds and edge.target not in before:
                    before[edge.target] = key
                    queue.append(edge.target)
        raise ValueError(f"no path from {start!r} to {end!r} along {kinds} edges")

    def texts(self) -> list[str]:
        """Every string the figure shows."""
        out = [self.title] + [n.label for n in self.nodes] + [n.note for n in self.nodes]
        out += [e.label for e in self.edges] + [f.label for f in self.frames]
        return [text for text in out if text]


class Column:
    """Boxes stacked bottom to top at one x, each joined to the one below by a main arrow."""

    def __init__(self, x: float, *, y: float = 0.0, width: float = 2.5, prefix: str = "") -> None:
        self.x, self.y, self.width, self.prefix = x, y, width, prefix
        self.nodes: list[Node] = []
        self.edges: list[Edge] = []
        self.last: str | None = None
        self.residual_x = x + width / 2 + 0.28

    def add(self, key: str, label: str, kind: str, *, note: str = "", shape: str = "") -> str:
        """Put a box on top of the column; `shape` labels the arrow that enters it."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        height = HEIGHT.get(kind, BOX_HEIGHT) + (
            NOTE_HEIGHT * (note.count("\n") + 1) if note else 0
        )
        previous = self.nodes[-1].kind if self.nodes else None
        gap = 0.0 if previous is None else SPLIT_GAP if previous == "split" else GAP
        width = 0.3 if kind == "add" else 0.0 if kind == "split" else self.width
        node = Node(
            self.prefix + key, label, kind, self.x, self.y + gap + height / 2, width, height, note
        )
        self.nodes.append(node)
        if self.last is not None:
            self.edges.append(Edge(self.last, node.key, "main", shape))
        self.y, self.last = node.top, node.key
        return node.key

    def sublayer(
        self, key: str, label: str, kind: str, *, norm_first: bool, note: str = "", shape: str = ""
    ) -> str:
        """One residual block: pre-LN x + F(LN(x)), or post-LN LN(x + F(x)); returns F's key."""
        split = self.add(f"{key}_split", "", "split", shape=shape)
        if norm_first:
            self.add(f"{key}_norm", "LayerNorm", "norm")
        sublayer = self.add(key, label, kind, note=note)
        add = self.add(f"{key}_add", "+", "add")
        self.edges.append(Edge(split, add, "residual", via_x=self.residual_x))
        if not norm_first:
            self.add(f"{key}_norm", "LayerNorm", "norm")
        return sublayer


def _anchor(node: Node, side: str) -> tuple[float, float]:
    dx = {"left": -node.width / 2, "right": node.width / 2}.get(side, 0.0)
    dy = {"top": node.height / 2, "bottom": -node.height / 2}.get(side, 0.0)
    return node.x + dx, node.y + dy


def route(edge: Edge, source: Node, target: Node) -> list[tuple[float, float]]:
    """The arrow's corners: straight up, or with right-angle bends."""
    if edge.kind == "residual":
        x = edge.via_x
        return [(source.x, source.y), (x, source.y), (x, target.y), _anchor(target, "right")]
    if edge.kind == "memory":
        if abs(source.y - target.y) < 1e-9:
            return [_anchor(source, "right"), _anchor(target, "left")]
        lift = source.top + 0.2
        return [
            _anchor(source, "top"),
            (source.x, lift),
            (edge.via_x, lift),
            (edge.via_x, target.y),
            _anchor(target, "left"),
        ]
    start, end = _anchor(source, "top"), _anchor(target, "bottom")
    if abs(source.x - target.x) < 1e-9:
        return [start, end]
    middle = (start[1] + end[1]) / 2
    return [start, (start[0], middle), (end[0], middle), end]


def draw(diagram: Diagram):
    """The diagram as a matplotlib Figure (1 data unit = 1 inch, so text keeps its size)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

    nodes = {node.key: node for node in diagram.nodes}
    xs = [n.x - n.width / 2 for n in diagram.nodes] + [n.x + n.width / 2 for n in diagram.nodes]
    xs += [f.right + 1.0 for f in diagram.frames] + [e.via_x for e in diagram.edges if e.via_x]
    left, right = min(xs) - 1.0, max(xs) + 0.2
    bottom, top = min(n.bottom for n in diagram.nodes) - 0.5, max(n.top for n in diagram.nodes)
    top += 0.3
    fig = common.new_matplotlib_figure(right - left, top - bottom + 0.5)
    fig.set_layout_engine("none")  # the axes fill the figure; inches are placed by hand
    ax = fig.add_axes((0, 0, 1, (top - bottom) / (top - bottom + 0.5)))
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_axis_off()
    fig.suptitle(diagram.title, fontsize=12, fontweight="bold")
    for frame in diagram.frames:
        members = [nodes[key] for key in frame.members]
        x0 = min(n.x - n.width / 2 for n in members) - 0.15
        y0, y1 = min(n.bottom for n in members) - 0.04, max(n.top for n in members) + 0.04
        ax.add_patch(
            Rectangle(
                (x0, y0), frame.right - x0, y1 - y0, fill=False, ls="--", lw=1.2, ec="#777777"
            )
        )
        ax.text(
            frame.right + 0.08,
            y1 - 0.05,
            frame.label,
            ha="left",
            va="top",
            fontsize=9.5,
            color="#555555",
            fontweight="bold",
        )
    for node in diagram.nodes:
        _draw_node(ax, node, Circle, FancyBboxPatch)
    for edge in diagram.edges:
        points = route(edge, nodes[edge.source], nodes[edge.target])
        color = EDGE_COLOR[edge.kind]
        into_split = nodes[edge.target].kind == "split"  # a junction: a line, no arrowhead
        shaft = points if into_split else points[:-1]
        ax.add_line(Line2D([p[0] for p in shaft], [p[1] for p in shaft], color=color, lw=1.4))
        if not into_split:
            ax.add_patch(
                FancyArrowPatch(
                    points[-2],
                    points[-1],
                    arrowstyle="-|>",
                    mutation_scale=12,
                    color=color,
                    lw=1.4,
                    shrinkA=0,
                    shrinkB=0,
                )
            )
        if edge.label:
            _draw_edge_label(ax, edge, points, color)
    handles = [Line2D([], [], color=EDGE_COLOR[k], lw=2) for k in ("main", "residual", "memory")]
    names = ["main path", "residual path (skips the sublayer)", "encoder output (memory)"]
    used = [k in {e.kind for e in diagram.edges} for k in ("main", "residual", "memory")]
    ax.legend(
        [h for h, u in zip(handles, used, strict=True) if u],
        [n for n, u in zip(names, used, strict=True) if u],
        loc="lower center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=3,
        fontsize=8.5,
        frameon=False,
    )
    return fig


def _draw_node(ax, node: Node, circle_type, box_type) -> None:
    if node.kind == "split":
        ax.add_patch(circle_type((node.x, node.y), 0.045, color=FILL["split"], zorder=3))
        return
    if node.kind == "add":
        ax.add_patch(
            circle_type(
                (node.x, node.y), node.width / 2, fc="white", ec="#333333", lw=1.3, zorder=3
            )
        )
        ax.text(node.x, node.y, "+", ha="center", va="center", fontsize=13, zorder=4)
        return
    ax.add_patch(
        box_type(
            (node.x - node.width / 2, node.bottom),
            node.width,
            node.height,
            boxstyle="round,pad=0,rounding_size=0.06",
            fc=FILL[node.kind],
            ec="#555555" if node.kind != "io" else "#aaaaaa",
            lw=1.0,
            zorder=2,
        )
    )
    label_y = node.top - 0.19 if node.note else node.y
    ax.text(
        node.x,
        label_y,
        node.label,
        ha="center",
        va="center",
        fontsize=LABEL_SIZE,
        zorder=4,
        gid=f"{node.key}:label",  # lets a test measure the text against its box
    )
    if node.note:
        color = "#b00020" if "mask" in node.note else "#444444"
        ax.text(
            node.x,
            (node.bottom + label_y - 0.1) / 2,
            node.note,
            ha="center",
            va="center",
            fontsize=NOTE_SIZE,
            color=color,
            zorder=4,
            gid=f"{node.key}:note",
            linespacing=1.15,
        )


def _draw_edge_label(ax, edge: Edge, points, color) -> None:
    if edge.kind == "memory":
        (x0, y), (x1, _) = points[-2], points[-1]
        ax.text(
            (x0 + x1) / 2,
            y + 0.04,
            edge.label,
            ha="center",
            va="bottom",
            fontsize=SHAPE_SIZE,
            color=color,
        )
        return
    (x, y0), (_, y1) = points[-2], points[-1]
    ax.text(
        x - 0.07,
        (y0 + y1) / 2,
        edge.label,
        ha="right",
        va="center",
        fontsize=SHAPE_SIZE,
        color="#1f4e8c",
        style="italic",
    )
