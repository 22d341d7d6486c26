"""`ViTAttentionExplorer`: pick a test digit, a layer and a head, and see what the Vision
Transformer's [CLS] token reads from each patch, or the attention rollout through all layers
(Abnar & Zuidema, 2020), drawn over the image.

The figure is a matplotlib image rendered to PNG inside the widget's own Output. The model is any
callable `model(images, return_attention=True)` with a ViT's output (`.logits`, `.attentions`)
and `.config` (`num_layers`, `num_heads`, `patch_size`); the numbers drawn come from
`tfm_edu.analysis.rollout`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np

from tfm_edu.viz.explorer import Explorer
from tfm_edu.viz.vit_views import IMAGE_CMAP, attention_overlay, overlay_vmax

__all__ = ["ViTAttentionExplorer"]

ROLLOUT = "rollout"
MEAN = "mean"
ALL_HEADS = "all"  # the head "choice" while the rollout is shown: it fuses every head


class ViTAttentionExplorer(Explorer):
    """Choose a model, an image, and a layer/head (or the rollout); see the map over the image."""

    def __init__(
        self,
        models,
        images,
        labels,
        index: int = 0,
        discard_ratio: float = 0.0,
        title: str | None = None,
    ) -> None:
        """
        Args:
            models: a ViT (`tfm_edu.models.vit.ViT`), or a dict {name: ViT} shown as a selector.
            images: (N, 1, H, W) tensor, e.g. `tfm_edu.data.digits.load("test")[0]`.
            labels: (N,) true digits, shown beside the prediction.
            index: the image shown first.
            discard_ratio: the rollout's starting discard ratio (a slider changes it).
            title: optional heading.
        """
        import ipywidgets as widgets
        import torch  # loaded here, so that importing the views stays light (chapter 1)

        self.models = _check_models(models)
        self.images = torch.as_tensor(images)
        self.labels = torch.as_tensor(labels)
        if self.images.dim() != 4 or len(self.images) != len(self.labels) or not len(self.images):
            raise ValueError(
                "images must be (N, C, H, W) and labels (N,) with the same N > 0, got "
                f"{tuple(self.images.shape)} and {tuple(self.labels.shape)}"
            )
        self.current_map: np.ndarray | None = None  # (P,) the values drawn last
        self._cache: dict[tuple[str, int], tuple] = {}

        names = list(self.models)
        self.model_dropdown = widgets.Dropdown(
            options=names,
            value=names[0],
            description="model",
            layout=widgets.Layout(width="320px", display="" if len(names) > 1 else "none"),
        )
        self.image_slider = widgets.IntSlider(
            value=index,
            min=0,
            max=len(self.images) - 1,
            description="test image",
            continuous_update=False,
        )
        narrow = {"description_width": "45px"}
        self.layer_dropdown = widgets.Dropdown(
            description="layer", style=narrow, layout={"width": "240px"}
        )
        self.head_dropdown = widgets.Dropdown(
            description="head", style=narrow, layout={"width": "260px"}
        )
        self._head = MEAN  # the head chosen last, restored when leaving the rollout
        self.discard_slider = widgets.FloatSlider(
            value=discard_ratio,
            min=0.0,
            max=0.9,
            step=0.1,
            description="discard",
            continuous_update=False,
        )
        self._assemble(
            title,
            [
                self._row([self.model_dropdown, self.image_slider]),
                self._row([self.layer_dropdown, self.head_dropdown, self.discard_slider]),
            ],
            min_height=200,
        )
        self._refresh_controls()
        for control in (
            self.model_dropdown,
            self.image_slider,
            self.layer_dropdown,
            self.head_dropdown,
            self.discard_slider,
        ):
            control.observe(self._on_change, names="value")
        self._draw()

    def set_view(
        self,
        index: int | None = None,
        layer: int | str | None = None,
        head: int | str | None = None,
        model: str | None = None,
    ) -> None:
        """Choose an image, a layer (an index or "rollout") and a head (an index or "mean")."""
        with self._quietly():
            if model is not None:
                self.model_dropdown.value = model
                self._refresh_controls()
            if index is not None:
                self.image_slider.value = index
            if head is not None:
                self._head = head
            if layer is not None:
                self.layer_dropdown.value = layer
                self._refresh_controls()
            if head is not None and self.layer_dropdown.value != ROLLOUT:
                self.head_dropdown.value = head
        self._draw()

    def _on_change(self, change) -> None:
        if self._busy:
            return
        if change["owner"] is self.head_dropdown and change["new"] != ALL_HEADS:
            self._head = change["new"]
        if change["owner"] in (self.model_dropdown, self.layer_dropdown):
            with self._quietly():
                self._refresh_controls()
        self._draw()

    def _refresh_controls(self) -> None:
        model = self.models[self.model_dropdown.value]
        layers, heads = model.config.num_layers, model.config.num_heads
        layer, head = self.layer_dropdown.value, self._head
        options = [("rollout (all layers)", ROLLOUT)] + [(f"layer {k}", k) for k in range(layers)]
        if list(self.layer_dropdown.options) != options:
            self.layer_dropdown.options = options
        self.layer_dropdown.value = layer if layer in (ROLLOUT, *range(layers)) else ROLLOUT
        rollout_mode = self.layer_dropdown.value == ROLLOUT
        if rollout_mode:  # the rollout fuses every head: say so instead of showing a stale head
            self.head_dropdown.options = [("all heads (rollout)", ALL_HEADS)]
            self.head_dropdown.value = ALL_HEADS
        else:
            self.head_dropdown.options = [("mean of heads", MEAN)] + [
                (f"head {h}", h) for h in range(heads)
            ]
            self.head_dropdown.value = head if head in (MEAN, *range(heads)) else MEAN
        self.head_dropdown.disabled = rollout_mode
        self.discard_slider.disabled = not rollout_mode

    def _run(self, name: str, index: int):
        import torch

        key = (name, index)
        if key not in self._cache:
            model = self.models[name]
            with torch.no_grad():
                out = model(self.images[index : index + 1], return_attention=True)
            probabilities = out.logits.softmax(-1)[0]  # (10,)
            attentions = [a[0] for a in out.attentions]  # L of (H, T, T)
            self._cache[key] = (probabilities, attentions)
        return self._cache[key]

    def _draw(self) -> None:
        import matplotlib

        from tfm_edu.analysis.rollout import attention_rollout, cls_attention

        name, index = self.model_dropdown.value, self.image_slider.value
        layer, head = self.layer_dropdown.value, self.head_dropdown.value
        model = self.models[name]
        probabilities, attentions = self._run(name, index)
        if layer == ROLLOUT:
            ratio = self.discard_slider.value
            values = attention_rollout(attentions, discard_ratio=ratio)[0, 1:].numpy()  # (P,)
            what = f"rollout through all layers (discard {ratio:.1f})"
        else:
            per_head = cls_attention(attentions)[layer]  # (H, P)
            values = per_head.mean(0) if head == MEAN else per_head[head]  # (P,)
            what = f"[CLS] attention, layer {layer}, " + (
                "mean of heads" if head == MEAN else f"head {head}"
            )
        self.current_map = np.asarray(values)
        predicted = int(probabilities.argmax())
        truth = int(self.labels[index])
        verdict = "right" if predicted == truth else "WRONG"
        caption = (
            f"image {index}: true {truth}, predicted {predicted} "
            f"(p = {probabilities[predicted]:.2f}, {verdict}). Showing {what}; "
            f"colour = weight per patch on a scale from 0 (the line on the colour bar marks an "
            f"even spread, 1/{len(self.current_map)} per patch). Weights per patch: "
            + ", ".join(f"{v:.2f}" for v in self.current_map)
        )
        self._show_notes([("info", caption)])
        with matplotlib.rc_context({"figure.dpi": 100}):
            from matplotlib.figure import Figure

            fig = Figure(figsize=(5.8, 2.6), layout="constrained")
            left, right = fig.subplots(1, 2)
            left.imshow(self.images[index, 0].numpy(), cmap=IMAGE_CMAP)
            left.set_title(f"true {truth}, predicted {predicted}", fontsize=9)
            left.set_xticks([])
            left.set_yticks([])
            attention_overlay(
                self.images[index],
                values,
                model.config.patch_size,
                what,
                ax=right,
                vmax=overlay_vmax(self.current_map),
                colorbar="weight per patch",
            )
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
        self._show_png(buffer.getvalue(), what)


def _is_vit(model) -> bool:
    config = getattr(model, "config", None)
    return callable(model) and all(
        hasattr(config, name) for name in ("num_layers", "num_heads", "patch_size")
    )


def _check_models(models) -> dict:
    if _is_vit(models):
        return {"ViT": models.eval()}
    if isinstance(models, Mapping) and models and all(_is_vit(m) for m in models.values()):
        return {str(name): model.eval() for name, model in models.items()}
    raise ValueError(
        f"models must be a ViT or a non-empty dict {{name: ViT}}, got {type(models).__name__}"
    )
