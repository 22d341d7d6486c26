"""Chapter 8's pictures: an image cut into patch tokens, attention over the image, what the
learned position embeddings learned, and where the classifier goes wrong.

Images are drawn with matplotlib (`imshow` is the natural tool for pixels, and the figures show
on GitHub too). Every function takes arrays and returns a `Figure`; the data comes from
`tfm_edu.analysis` and the model. `ViTAttentionExplorer` (in `vit_explorer.py`) is the widget
built from `attention_overlay`.
"""

from __future__ import annotations

import numpy as np

from tfm_edu.viz._common import new_matplotlib_figure

__all__ = [
    "patch_grid",
    "patches_figure",
    "attention_overlay",
    "overlay_vmax",
    "cls_attention_figure",
    "position_similarity_figure",
    "confusion_figure",
    "examples_figure",
    "overlay_gallery",
]

IMAGE_CMAP = "gray_r"  # white paper, black ink, like the scans
MAP_CMAP = "inferno"  # black = 0 ... bright yellow = the largest value
INK_COLOR = "deepskyblue"  # stands out on every colour of inferno


def _image(image) -> np.ndarray:
    """(H, W) float array from (H, W), (1, H, W) or a tensor."""
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    array = np.squeeze(array)
    if array.ndim != 2:
        raise ValueError(f"image must be (H, W) or (1, H, W), got shape {np.shape(image)}")
    return array.astype(np.float64)


def patch_grid(values, image_size: int, patch_size: int) -> np.ndarray:
    """Spread one value per patch over the patch's pixels, to draw it on top of the image.

    Args:
        values: (..., P), patches in reading order (as `tfm_edu.models.vit.patchify` numbers them),
            with P = (image_size / patch_size) ** 2.
        image_size, patch_size: the image's side and the patch's side, in pixels.

    Returns:
        (..., image_size, image_size) NumPy array, constant over each patch.
    """
    values = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    if image_size % patch_size:
        raise ValueError(f"patch_size={patch_size} must divide image_size={image_size}")
    side = image_size // patch_size
    if values.ndim < 1 or values.shape[-1] != side * side:
        raise ValueError(
            f"values must be (..., P) with P = {side * side} patches of {patch_size}x{patch_size} "
            f"in a {image_size}x{image_size} image, got shape {values.shape}"
        )
    grid = values.reshape(*values.shape[:-1], side, side)  # (..., h, w)
    return grid.repeat(patch_size, axis=-2).repeat(patch_size, axis=-1)  # (..., H, W)


def patches_figure(image, patch_size: int, title: str | None = None):
    """Image -> patches -> tokens: the image with its patch grid, the patches pulled apart in
    reading order, and each patch flattened into the row of numbers the Linear layer reads.

    Args:
        image: (H, W) or (1, H, W), one grey image.
        patch_size: side of a patch; must divide H and W.
    """
    pixels = _image(image)  # (H, W)
    side = pixels.shape[0] // patch_size
    if pixels.shape[0] != pixels.shape[1] or pixels.shape[0] % patch_size:
        raise ValueError(
            f"image must be square with patch_size={patch_size} dividing its side, "
            f"got {pixels.shape}"
        )
    count = side * side
    fig = new_matplotlib_figure(10, 3.2)
    grid = fig.add_gridspec(2, 3, width_ratios=[1, 1, 1.6], height_ratios=[1, 1])
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(pixels, cmap=IMAGE_CMAP)
    for k in range(1, side):
        ax.axhline(k * patch_size - 0.5, color="tab:red", lw=2)
        ax.axvline(k * patch_size - 0.5, color="tab:red", lw=2)
    ax.set_title(f"{pixels.shape[0]}x{pixels.shape[1]} image")
    ax.set_xticks([])
    ax.set_yticks([])
    patch_grid_spec = grid[:, 1].subgridspec(side, side, wspace=0.25, hspace=0.25)
    patches = pixels.reshape(side, patch_size, side, patch_size).transpose(0, 2, 1, 3)
    vmin, vmax = pixels.min(), pixels.max()
    for i in range(count):
        sub = fig.add_subplot(patch_grid_spec[i // side, i % side])
        sub.imshow(patches[i // side, i % side], cmap=IMAGE_CMAP, vmin=vmin, vmax=vmax)
        sub.set_xticks([])
        sub.set_yticks([])
        if count <= 16:
            sub.set_title(f"patch {i}", fontsize=7, pad=2)
    ax = fig.add_subplot(grid[:, 2])
    rows = patches.reshape(count, patch_size * patch_size)  # (P, p*p)
    ax.imshow(rows, cmap=IMAGE_CMAP, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_yticks(range(count), [f"token {i}" for i in range(count)], fontsize=7)
    ax.set_xticks(range(0, patch_size * patch_size, max(1, patch_size * patch_size // 8)))
    ax.set_xlabel(f"{patch_size * patch_size} pixel values -> Linear -> D numbers")
    ax.set_title("flattened patches (one token each)")
    if title:
        fig.suptitle(title)
    return fig


def overlay_vmax(values) -> float:
    """The top of an honest scale for a per-patch map: twice the uniform share 1/P, or the
    largest value where that is larger.

    A map whose P patches all get about 1/P then shows as one middle colour, not as bright and
    dark patches (scaling to the map's own maximum would stretch 0.17 vs 0.22 to black vs yellow).

    Args:
        values: (P,) or (N, P) non-negative weights per patch.
    """
    values = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    if values.ndim not in (1, 2) or values.shape[-1] == 0:
        raise ValueError(f"values must be (P,) or (N, P) with P > 0, got shape {values.shape}")
    return float(max(2.0 / values.shape[-1], float(values.max())))


def attention_overlay(
    image,
    values,
    patch_size: int,
    title: str | None = None,
    ax=None,
    *,
    vmax: float | None = None,
    colorbar: str | None = None,
):
    """One value per patch drawn as colour, with the outline of the digit's ink on top.

    Args:
        image: (H, W) or (1, H, W).
        values: (P,) non-negative, e.g. the [CLS] row of a rollout without its first column.
        patch_size: side of a patch.
        ax: draw into this matplotlib Axes (default: a new figure).
        vmax: the value drawn bright yellow, on a scale from 0 (black), so that several maps
            drawn with the same vmax can be compared (`overlay_vmax` gives an honest one).
            Default None: each map is scaled to its own largest value, so a map whose patches
            are nearly equal looks nearly uniform *and bright*; the title should say what it
            shows.
        colorbar: the colour bar's label; None (default) draws none. The bar shows the real
            values (0..vmax) with a line at the uniform share 1/P, labelled "uniform".
    """
    pixels = _image(image)  # (H, W)
    heat = patch_grid(values, pixels.shape[0], patch_size)  # (H, W)
    count = (pixels.shape[0] // patch_size) ** 2  # P
    if vmax is None:
        top = heat.max()
        heat = heat / top if top > 0 else np.zeros_like(heat)  # (H, W) in 0..1
        vmax = 1.0
    fig = None
    if ax is None:
        fig = new_matplotlib_figure(2.4 if colorbar is None else 3.0, 2.6)
        ax = fig.add_subplot()
    drawn = ax.imshow(heat, cmap=MAP_CMAP, vmin=0, vmax=vmax)
    if pixels.max() > pixels.min():  # the ink's outline, half-way between paper and darkest ink
        middle = (pixels.min() + pixels.max()) / 2
        ax.contour(pixels, levels=[middle], colors=[INK_COLOR], linewidths=1.3)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    if colorbar is not None:
        _uniform_colorbar(drawn, ax, colorbar, count)
    return fig if fig is not None else ax.figure


def cls_attention_figure(
    image,
    cls_maps,
    rollout,
    patch_size: int,
    title: str | None = None,
    *,
    shared_scale: bool = True,
):
    """What [CLS] reads from each patch: one row per layer (a column per head, then the head
    mean), and a last row with the image and the rollout.

    Args:
        image: (H, W) or (1, H, W).
        cls_maps: (L, H, P) from `tfm_edu.analysis.rollout.cls_attention`.
        rollout: (P,) the [CLS] row of `attention_rollout` without its first column.
        patch_size: side of a patch.
        shared_scale: True (default): every panel on one scale, from 0 to 1 of [CLS]'s
            attention, with one colour bar, so a sharp head and a flat mean look different.
            False: each panel scaled to its own largest value (its brightest patch is always
            yellow) and the colour bar says so.
    """
    cls_maps = np.asarray(cls_maps)
    if cls_maps.ndim != 3:
        raise ValueError(f"cls_maps must be (L, H, P), got shape {cls_maps.shape}")
    L, H, _ = cls_maps.shape
    vmax = 1.0 if shared_scale else None
    fig = new_matplotlib_figure(1.3 * (H + 1) + 0.8, 1.35 * (L + 1))
    axes = fig.subplots(L + 1, H + 1, squeeze=False)
    for layer in range(L):
        for head in range(H + 1):
            values = cls_maps[layer, head] if head < H else cls_maps[layer].mean(0)
            name = f"head {head}" if head < H else "mean"
            attention_overlay(
                image, values, patch_size, f"layer {layer} {name}", axes[layer, head], vmax=vmax
            )
    axes[L, 0].imshow(_image(image), cmap=IMAGE_CMAP)
    axes[L, 0].set_title("image", fontsize=8)
    attention_overlay(image, rollout, patch_size, "rollout", axes[L, 1], vmax=vmax)
    for ax in axes[L]:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[L, 2:]:
        ax.axis("off")
    label = "share of [CLS]'s attention" if shared_scale else "share of the panel's largest value"
    fig.colorbar(axes[0, 0].images[0], ax=axes, shrink=0.6, label=label)
    if title:
        fig.suptitle(title)
    return fig


def position_similarity_figure(similarity, title: str | None = None):
    """The ViT paper's figure 7 (centre): for each patch position, a small map of how similar
    its position vector is to every other position's, drawn at that patch's place in the grid.

    Args:
        similarity: (P, P) from `tfm_edu.analysis.position_similarity`, P a square number.
    """
    similarity = np.asarray(similarity)
    count = similarity.shape[0]
    side = round(count**0.5)
    if similarity.shape != (count, count) or side * side != count:
        raise ValueError(f"similarity must be (P, P) with P a square, got {similarity.shape}")
    fig = new_matplotlib_figure(1.0 + 0.9 * side, 0.9 * side + 0.4)
    axes = fig.subplots(side, side, squeeze=False)
    for i in range(count):
        ax = axes[i // side, i % side]
        image = ax.imshow(similarity[i].reshape(side, side), cmap="viridis", vmin=-1, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity")
    fig.supylabel("patch row")
    fig.supxlabel("patch column")
    if title:
        fig.suptitle(title)
    return fig


def confusion_figure(labels, predictions, title: str | None = None):
    """Confusion matrix of digits: true digit down, predicted digit across, counts in cells."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(
            f"labels and predictions must both be (N,), got {labels.shape} and {predictions.shape}"
        )
    counts = np.zeros((10, 10), dtype=int)
    np.add.at(counts, (labels, predictions), 1)
    fig = new_matplotlib_figure(4.2, 3.8)
    ax = fig.add_subplot()
    ax.imshow(np.log1p(counts), cmap="Blues")
    for (t, p), n in np.ndenumerate(counts):
        if n:
            color = "white" if t == p else "tab:red"
            ax.text(p, t, str(n), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(title or f"{(labels == predictions).sum()} of {len(labels)} right")
    return fig


def examples_figure(images, captions: list[str], columns: int = 8, title: str | None = None):
    """A row (or rows) of small images with a caption under each, e.g. misclassified digits."""
    images = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if len(images) == 0:
        raise ValueError("no images to show")
    rows = -(-len(images) // columns)
    fig = new_matplotlib_figure(1.15 * columns, 1.35 * rows + (0.3 if title else 0))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions, strict=False):
        ax.imshow(_image(image), cmap=IMAGE_CMAP)
        ax.set_title(caption, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def overlay_gallery(
    images,
    values,
    patch_size: int,
    captions: list[str],
    columns: int = 8,
    *,
    shared_scale: bool = True,
    label: str = "weight per patch",
):
    """Several images, each with its own per-patch map drawn over it (e.g. rollouts).

    Args:
        images: (N, 1, H, W) or (N, H, W).
        values: (N, P) one map per image.
        patch_size: side of a patch.
        captions: N strings.
        shared_scale: True (default): every map on one scale from 0 to `overlay_vmax(values)`,
            with a colour bar of the real values and the uniform share 1/P marked. False: each
            map scaled to its own largest value, no colour bar.
        label: the colour bar's label.
    """
    values = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    if len(images) != len(values) or len(images) != len(captions) or values.ndim != 2:
        raise ValueError(
            f"need N images, (N, P) values and N captions, got {len(images)} images, values of "
            f"shape {values.shape} and {len(captions)} captions"
        )
    rows = -(-len(images) // columns)
    vmax = overlay_vmax(values) if shared_scale else None
    fig = new_matplotlib_figure(1.2 * columns + (1.2 if shared_scale else 0), 1.4 * rows)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, row, caption in zip(axes.flat, images, values, captions, strict=False):
        attention_overlay(image, row, patch_size, caption, ax=ax, vmax=vmax)
    if shared_scale:
        _uniform_colorbar(axes[0, 0].images[0], axes, label, values.shape[-1])
    return fig


def _uniform_colorbar(mappable, ax, label: str, count: int):
    """A colour bar of the real values, with a line at the uniform share 1/P."""
    bar = mappable.axes.figure.colorbar(mappable, ax=ax, shrink=0.9, pad=0.03)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    uniform = 1.0 / count
    if uniform <= mappable.norm.vmax:
        bar.ax.axhline(uniform, color=INK_COLOR, lw=2)
        bar.ax.text(
            -0.3, uniform, f"uniform 1/{count}", transform=bar.ax.get_yaxis_transform(),
            ha="right", va="center", fontsize=7,
        )  # fmt: skip
    return bar
