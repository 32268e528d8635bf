"""Latent action models (paper Appendix G.3) and the action decoder.

A window holds `context` past frames, the current frame o_t, o_{t+1}, and
`future` frames after it: [o_{t-H} .. o_t, o_{t+1}, .. o_{t+1+F}], each frame
a state vector, or an image for the Space-Time LAM (with the arm's proprioception
beside it, a dict: `clam_jax.data.observations`); `example_window()` is one.
Every LAM has the same interface: `idm(window)` returns z_t for the transition
o_t -> o_{t+1}; `__call__(window, train)` returns z_t and the FDM's
predictions, which the stage-1 loss compares with `reconstruction_target(window)`,
in the scale of `frames(window)` (states as given, pixels in [-1, 1], proprioception
as given); `joint(window, labeled, train)` returns those predictions and the labeled
windows' z_t from one IDM pass over both batches.
`train=True` turns dropout on (it needs a "dropout" RNG) and, with
`codebook_size` > 0 (discrete latents), moves the EMA codebook (apply with
`mutable=["vq", "losses", "stats"]`, see `clam_jax.models.quantizers`);
relabelling uses the default, deterministic mode.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from clam_jax.data.observations import first_leaf, frames_and_proprio
from clam_jax.data.windows import idm_inputs, window_length
from clam_jax.errors import ConfigError
from clam_jax.models.mlp import MLP
from clam_jax.models.quantizers import VectorQuantizer
from clam_jax.models.space_time import SpaceTimeTransformer, to_unit, unpatchify
from clam_jax.models.transformer import DecoderStack, EncoderBlock, LayerStack, add_positions


class _LatentsThenPredictions:
    """What every LAM derives from its `latents(window, train)` (the IDM's: one per transition of the window,
    or z_t alone) and `predict(window, latents, train)` (the FDM's predictions)."""

    def current_latent(self, latents: jax.Array) -> jax.Array:
        """z_t, the latent of the window's current transition."""
        return latents[:, self.context]

    def idm(self, window, train: bool = False) -> jax.Array:
        return self.current_latent(self.latents(window, train))

    def __call__(self, window, train: bool = False):
        """Returns (z_t, the FDM's predictions)."""
        latents = self.latents(window, train)
        return self.current_latent(latents), self.predict(window, latents, train)

    def joint(self, window, labeled, train: bool = False):
        """(The FDM's predictions for `window`, z_t of the `labeled` windows), from one IDM pass over both
        batches (stage 1's joint step): one set of kernels instead of two."""
        n = first_leaf(window).shape[0]
        latents = self.latents(jax.tree.map(lambda a, b: jnp.concatenate([a, b]), window, labeled), train)
        return self.predict(window, latents[:n], train), self.current_latent(latents[n:])


class _StateFrames:
    """Frames of a state LAM: vectors of `obs_dim`, compared as they are."""

    def example_window(self) -> jax.Array:
        return jnp.zeros((1, self.window, self.obs_dim))

    @staticmethod
    def frames(window: jax.Array) -> jax.Array:
        return window


class MLPLatentActionModel(_StateFrames, _LatentsThenPredictions, nn.Module):
    """IDM: MLP over the flattened window (and its frame-to-frame differences times `difference_scale` if > 0,
    `clam_jax.data.windows.idm_inputs`); FDM: MLP over o[t-H .. t] and z_t, predicting o_{t+1}."""

    obs_dim: int
    latent_dim: int
    hidden: Sequence[int]
    context: int = 1
    future: int = 0
    codebook_size: int = 0  # > 0: vector-quantized latents (see `clam_jax.models.quantizers`)
    codebooks: int = 1
    tokens: int = 1
    difference_scale: float = 0.0
    dtype: Any = "float32"

    @property
    def window(self) -> int:
        return window_length(self.context, self.future)

    def setup(self):
        self.idm_net = MLP(self.hidden, self.latent_dim, self.dtype)
        self.fdm_net = MLP(self.hidden, self.obs_dim, self.dtype)
        self.quantizer = (VectorQuantizer(self.codebook_size, self.codebooks, self.tokens) if self.codebook_size
                          else None)

    def latents(self, window: jax.Array, train: bool = False) -> jax.Array:
        """[B, window, obs_dim] -> z_t [B, latent_dim]."""
        z = self.idm_net(idm_inputs(window, self.difference_scale))
        return self.quantizer(z, train) if self.quantizer else z

    @staticmethod
    def current_latent(latents: jax.Array) -> jax.Array:
        return latents

    def fdm(self, past: jax.Array, z: jax.Array) -> jax.Array:
        """past [B, context + 1, obs_dim], z [B, latent_dim] -> predicted o_{t+1} [B, obs_dim]."""
        return self.fdm_net(jnp.concatenate([past.reshape(past.shape[0], -1), z], axis=-1))

    def predict(self, window: jax.Array, z: jax.Array, train: bool = False) -> jax.Array:
        """The prediction of o_{t+1}."""
        return self.fdm(window[:, : self.context + 1], z)

    def reconstruction_target(self, window: jax.Array) -> jax.Array:
        return window[:, self.context + 1]


class TransformerLatentActionModel(_StateFrames, _LatentsThenPredictions, nn.Module):
    """Transformer CLAM for states (paper Appendix G.3, Table 12).

    IDM: a linear embedding (LeakyReLU) plus learned positions, a non-causal
    encoder over the whole window, and a linear head giving one latent per
    transition (read from the later frame's token). FDM: a decoder whose queries
    are o_0 .. o_{W-2} under a causal self-attention mask and whose memory is the
    embedded latents, attended without a mask as the paper does; it predicts
    every next frame o_1 .. o_{W-1}. z_t is the latent of the transition at the
    window's current frame.
    """

    obs_dim: int
    latent_dim: int
    context: int = 1
    future: int = 0
    embed_dim: int = 256
    num_heads: int = 4
    mlp_dim: int = 2048
    num_layers: int = 3
    dropout: float = 0.1
    codebook_size: int = 0  # > 0: vector-quantized latents (see `clam_jax.models.quantizers`)
    codebooks: int = 1
    tokens: int = 1
    dtype: Any = "float32"

    @property
    def window(self) -> int:
        return window_length(self.context, self.future)

    def setup(self):
        block = dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim, dropout=self.dropout, dtype=self.dtype)
        positions = nn.initializers.normal(1.0)
        self.idm_embed = nn.Dense(self.embed_dim, dtype=self.dtype)
        self.idm_positions = self.param("idm_positions", positions, (self.window, self.embed_dim))
        self.encoder = LayerStack(EncoderBlock, self.num_layers, block)
        self.latent_head = nn.Dense(self.latent_dim, dtype=self.dtype)
        self.fdm_embed = nn.Dense(self.embed_dim, dtype=self.dtype)
        self.latent_embed = nn.Dense(self.embed_dim, dtype=self.dtype)
        self.fdm_positions = self.param("fdm_positions", positions, (self.window, self.embed_dim))
        self.decoder = DecoderStack(self.num_layers, block)
        self.decoder_norm = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype)
        self.to_observation = nn.Dense(self.obs_dim, dtype=self.dtype)
        self.quantizer = (VectorQuantizer(self.codebook_size, self.codebooks, self.tokens) if self.codebook_size
                          else None)

    def latents(self, window: jax.Array, train: bool = False) -> jax.Array:
        """[B, W, obs_dim] -> a latent per transition [B, W - 1, latent_dim] (float32)."""
        h = add_positions(nn.leaky_relu(self.idm_embed(window), 0.2), self.idm_positions.astype(self.dtype))
        h = self.encoder(h, None, train)
        latents = self.latent_head(h[:, 1:]).astype("float32")
        return self.quantizer(latents, train) if self.quantizer else latents

    def fdm(self, observations: jax.Array, latents: jax.Array, train: bool = False) -> jax.Array:
        """o_0 .. o_{n-1} [B, n, obs_dim] and their latents [B, n, latent_dim] -> o_1 .. o_n predicted."""
        n = observations.shape[1]
        positions = self.fdm_positions.astype(self.dtype)
        queries = add_positions(nn.leaky_relu(self.fdm_embed(observations), 0.2), positions[:n])
        memory = add_positions(self.latent_embed(latents), positions[1:n + 1])
        causal = nn.make_causal_mask(observations[..., 0])
        queries = self.decoder(queries, memory, causal, None, train)
        return self.to_observation(self.decoder_norm(queries)).astype("float32")

    def predict(self, window: jax.Array, latents: jax.Array, train: bool = False) -> jax.Array:
        """Predictions of o_1 .. o_{W-1}."""
        return self.fdm(window[:, :-1], latents, train)

    def reconstruction_target(self, window: jax.Array) -> jax.Array:
        return window[:, 1:]


class SpaceTimeLatentActionModel(_LatentsThenPredictions, nn.Module):
    """Space-Time CLAM for pixels (paper Appendix G.3, Figure 10).

    IDM: a non-causal Space-Time transformer over the window's frames with a CLS
    token per frame; a linear head on the CLS token of frame j + 1 gives the
    latent of transition j. FDM: a Space-Time transformer over o_0 .. o_{W-2}
    with causal temporal attention and cross-attention from every patch to the
    embedded latents of the window (unmasked, as the paper's decoder), whose
    tokens are mapped back to pixel patches: it predicts every next frame
    o_1 .. o_{W-1}, in [-1, 1]. z_t is the latent of the window's current transition.
    With `residual`, the patches are added to the frame before (the FDM predicts
    the change; not in the paper): copying o_t, the cheat, is then the starting
    point rather than something the FDM has to learn through its bottleneck.
    With `proprio_dim` > 0, observations are {"image": frames, "proprio": [..., proprio_dim]}:
    each frame's proprioception is one more token in the IDM and the FDM, and the
    FDM also predicts the next frames' proprioception from its token (the paper's
    text describes proprioception for its robot policies, not for its LAM).
    """

    image_size: int
    latent_dim: int
    context: int = 1
    future: int = 0
    channels: int = 3
    patch_size: int = 16
    embed_dim: int = 256
    num_heads: int = 4
    mlp_dim: int = 2048
    num_layers: int = 3
    dropout: float = 0.1
    residual: bool = False
    proprio_dim: int = 0
    codebook_size: int = 0  # > 0: vector-quantized latents (see `clam_jax.models.quantizers`)
    codebooks: int = 1
    tokens: int = 1
    dtype: Any = "float32"

    @property
    def window(self) -> int:
        return window_length(self.context, self.future)

    def example_window(self):
        frames = jnp.zeros((1, self.window, self.image_size, self.image_size, self.channels), jnp.uint8)
        return {"image": frames, "proprio": jnp.zeros((1, self.window, self.proprio_dim))} if self.proprio_dim \
            else frames

    @staticmethod
    def frames(window):
        """The window's frames in [-1, 1] (and its proprioception as given)."""
        if isinstance(window, dict):
            return {"image": to_unit(window["image"]), "proprio": window["proprio"]}
        return to_unit(window)

    def setup(self):
        if self.image_size % self.patch_size:
            raise ConfigError(f"Images of {self.image_size} pixels do not divide into patches of "
                              f"{self.patch_size}; use an image size that is a multiple of the patch size.")
        sizes = dict(patch_size=self.patch_size, embed_dim=self.embed_dim, num_heads=self.num_heads,
                     mlp_dim=self.mlp_dim, num_layers=self.num_layers, dropout=self.dropout,
                     max_frames=self.window, dtype=self.dtype)
        self.idm_encoder = SpaceTimeTransformer(cls=True, **sizes)
        self.latent_head = nn.Dense(self.latent_dim, dtype=self.dtype)
        self.fdm_decoder = SpaceTimeTransformer(causal=True, **sizes)
        self.latent_embed = nn.Dense(self.embed_dim, dtype=self.dtype)
        self.latent_positions = self.param("latent_positions", nn.initializers.normal(1.0),
                                           (self.window - 1, self.embed_dim))
        self.to_patches = nn.Dense(self.patch_size ** 2 * self.channels, dtype=self.dtype)
        if self.proprio_dim:
            self.to_proprio = nn.Dense(self.proprio_dim, dtype=self.dtype)
        self.quantizer = (VectorQuantizer(self.codebook_size, self.codebooks, self.tokens) if self.codebook_size
                          else None)

    def latents(self, window, train: bool = False) -> jax.Array:
        """[B, W, H, W, C] -> a latent per transition [B, W - 1, latent_dim] (float32)."""
        frames, proprio = frames_and_proprio(window)
        tokens = self.idm_encoder(frames, train=train, proprio=proprio)
        latents = self.latent_head(tokens[:, 1:, 0]).astype("float32")
        return self.quantizer(latents, train) if self.quantizer else latents

    def fdm(self, observations, latents: jax.Array, train: bool = False):
        """o_0 .. o_{n-1} [B, n, H, W, C] and the window's latents [B, W - 1, latent_dim] -> o_1 .. o_n
        predicted, in the scale of `frames`."""
        frames, proprio = frames_and_proprio(observations)
        memory = self.latent_embed(latents) + self.latent_positions[:latents.shape[1]].astype(self.dtype)
        tokens = self.fdm_decoder(frames, memory, train=train, proprio=proprio)
        patches = self.to_patches(tokens[:, :, 0 if proprio is None else 1:]).astype("float32")
        predictions = unpatchify(patches, self.patch_size, self.image_size, self.image_size)
        if proprio is None:
            return predictions + to_unit(frames) if self.residual else predictions
        next_proprio = self.to_proprio(tokens[:, :, 0]).astype("float32")
        if self.residual:
            predictions, next_proprio = predictions + to_unit(frames), next_proprio + proprio
        return {"image": predictions, "proprio": next_proprio}

    def predict(self, window, latents: jax.Array, train: bool = False):
        """Predictions of o_1 .. o_{W-1}."""
        return self.fdm(jax.tree.map(lambda x: x[:, :-1], window), latents, train)

    def reconstruction_target(self, window):
        return self.frames(jax.tree.map(lambda x: x[:, 1:], window))


LAM_KINDS = ("mlp", "transformer", "space_time")


def make_latent_action_model(kind: str, *, obs_dim: int, latent_dim: int, context: int, future: int,
                             dtype: Any, hidden=(1024, 1024), transformer=None, space_time=None,
                             image_size: int = 0, proprio_dim: int = 0, codebook_size: int = 0, codebooks: int = 1,
                             tokens: int = 1, difference_scale: float = 0.0) -> nn.Module:
    """The LAM named by `kind` ("mlp" or "transformer" over states of `obs_dim`, "space_time" over
    square images of `image_size`, with proprioception of `proprio_dim` beside them if > 0); `transformer` and
    `space_time` hold those models' sizes;
    `codebook_size` > 0 quantizes its latents as `codebooks` x `tokens` codewords; `difference_scale` > 0 (MLP
    only) shows the IDM the window's frame-to-frame differences too."""
    common = dict(latent_dim=latent_dim, context=context, future=future, codebook_size=codebook_size,
                  codebooks=codebooks, tokens=tokens, dtype=dtype)
    if difference_scale and kind != "mlp":
        raise ConfigError(f"difference_scale is an option of the 'mlp' latent action model, not of {kind!r}.")
    if kind == "mlp":
        return MLPLatentActionModel(obs_dim=obs_dim, hidden=tuple(hidden), difference_scale=difference_scale,
                                    **common)
    if kind == "transformer":
        return TransformerLatentActionModel(obs_dim=obs_dim, **dict(transformer or {}), **common)
    if kind == "space_time":
        return SpaceTimeLatentActionModel(image_size=image_size, proprio_dim=proprio_dim, **dict(space_time or {}),
                                          **common)
    raise ConfigError(f"Unknown latent action model {kind!r}; use one of {LAM_KINDS}.")


class ActionDecoder(nn.Module):
    """z -> action in [-1, 1]: a linear embedding, an MLP, tanh (paper Table 11)."""

    action_dim: int
    embed_dim: int
    hidden: Sequence[int]
    dtype: Any = "float32"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        embedding = nn.Dense(self.embed_dim, dtype=self.dtype)(z)
        return jnp.tanh(MLP(self.hidden, self.action_dim, self.dtype)(embedding))


class MLPPolicy(nn.Module):
    """obs -> output; `squash` puts outputs in [-1, 1] (actions), off for latent actions."""

    out_dim: int
    hidden: Sequence[int]
    squash: bool = False
    dtype: Any = "float32"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        out = MLP(self.hidden, self.out_dim, self.dtype)(obs)
        return jnp.tanh(out) if self.squash else out
