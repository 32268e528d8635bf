"""Does a latent action model's latent space mean something? Probes, decoder errors and latent statistics.

For a finished run's LAM (a method with a stage-1 checkpoint and a saved policy:
`clam`, `lapo`), on its own datasets, whose true actions the LAM never trained on
except D_labeled's:
- linear and MLP probes from z_t to a_t, fitted on 80% of D_unlabeled's episodes
  and scored (R²) on the other 20% and on the expert episodes;
- the action decoder's error on D_labeled (its training data), on D_unlabeled
  (labels it never saw) and on the expert episodes;
- how sharp its labels are in time: the weights of decoded a_t regressed on the true
  a_{t-2} .. a_{t+3} (`lag_weights`), on D_labeled and on the expert episodes;
- the reconstruction error against the cheat loss MSE(o_t, o_{t+1});
- the latents' per-dimension variance and effective rank, and for quantized
  latents the share of codewords in use and their perplexity.
`python -m clam_jax.analyze --workdir=RUN` prints the table, writes
`<workdir>/analysis.json` and the plots of `clam_jax.plots`.
"""
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax.traverse_util import flatten_dict

from clam_jax.errors import DataError
from clam_jax.methods import clam
from clam_jax.models.mlp import MLP
from clam_jax.rollout.saved_policy import SPEC_FILE
from clam_jax.stages import (lam_and_decoder, load_datasets, make_normalizer, padded_observations,
                             stage1_optimizers)
from clam_jax.training.checkpoints import TrainStateCheckpoints

HELD_OUT = 0.2  # the share of D_unlabeled's episodes the probes are scored on
LABEL_LAGS = (-2, -1, 0, 1, 2, 3)


def r2_score(targets: np.ndarray, predictions: np.ndarray) -> float:
    """1 - residual / total sum of squares, pooled over the output dimensions (so a near-constant one cannot
    dominate): 1 for perfect predictions, 0 for predicting the mean, negative for worse."""
    residual = np.sum(np.square(targets - predictions))
    total = np.sum(np.square(targets - targets.mean(0)))
    return float(1.0 - residual / total)


def linear_probe(z_train: np.ndarray, a_train: np.ndarray):
    """The least-squares affine map from latents to actions, as a function of latents."""
    def design(z):
        return np.concatenate([z, np.ones((len(z), 1))], axis=1)

    weights, *_ = np.linalg.lstsq(design(z_train), a_train, rcond=None)
    return lambda z: design(z) @ weights


def mlp_probe(z_train: np.ndarray, a_train: np.ndarray, *, hidden=(64, 64), steps: int = 2000,
              batch_size: int = 256, seed: int = 0):
    """A small MLP fitted by Adam (MSE) on standardized latents, as a function of latents."""
    mean, std = z_train.mean(0), z_train.std(0) + 1e-6
    model = MLP(hidden, a_train.shape[-1])
    tx = optax.adam(1e-3)
    params = model.init(jax.random.key(seed), jnp.zeros((1, z_train.shape[-1])))
    x, y = jnp.asarray((z_train - mean) / std, jnp.float32), jnp.asarray(a_train, jnp.float32)

    def step(carry, key):
        params, opt_state = carry
        index = jax.random.randint(key, (batch_size,), 0, len(x))
        grads = jax.grad(lambda p: jnp.mean(jnp.square(model.apply(p, x[index]) - y[index])))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    keys = jax.random.split(jax.random.key(seed + 1), steps)
    (params, _), _ = jax.jit(lambda carry: jax.lax.scan(step, carry, keys))((params, tx.init(params)))
    return lambda z: np.asarray(model.apply(params, jnp.asarray((z - mean) / std, jnp.float32)))


def lag_weights(labels: np.ndarray, actions: np.ndarray, lags=LABEL_LAGS) -> np.ndarray:
    """Per action dimension d, the least-squares weights w[d, k] of labels[:, t, d] ~ sum_k w[d, k] *
    actions[:, t + lags[k], d] over every step t where all lags exist ([N, T, A] both): [A, len(lags)].
    Sharp labels put 1 on lag 0 and 0 elsewhere; an IDM that mixes a step's action with its neighbours'
    (its window shows them too) spreads the weight, and at a switch of the expert's action it labels the
    step before with part of the action after (README, "Sharper labels")."""
    first, last = -min(lags), labels.shape[1] - max(lags)
    if last <= first:
        raise DataError(f"lag_weights needs episodes longer than {max(lags) - min(lags)} steps.")
    regressors = np.stack([actions[:, first + k: last + k] for k in lags], axis=-1)  # [N, T', A, L]
    targets = labels[:, first:last]
    return np.stack([np.linalg.lstsq(regressors[..., d, :].reshape(-1, len(lags)), targets[..., d].ravel(),
                                     rcond=None)[0] for d in range(labels.shape[-1])])


def effective_rank(matrix: np.ndarray) -> float:
    """exp of the entropy of the normalized singular values of the centered rows (Roy & Vetterli 2007): the
    number of directions the rows really spread in, between 1 and the column count."""
    singular = np.linalg.svd(matrix - matrix.mean(0), compute_uv=False)
    p = singular / singular.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def codebook_usage(z: np.ndarray, codebook: np.ndarray, tokens: int) -> dict:
    """For quantized latents [M, D] and their codebooks [C, K, d] (each latent is C x `tokens` tokens of d dims,
    a token of codebook c one of its K codewords): the share of codewords in use and the perplexity of their
    use, each the mean over codebooks. A token's codeword is its nearest, so float rounding cannot split one."""
    num_codebooks, size, dim = codebook.shape
    parts = z.reshape(len(z), num_codebooks, tokens, dim)
    usage, perplexity = [], []
    for c in range(num_codebooks):
        vectors = parts[:, c].reshape(-1, dim)
        nearest = np.argmin(np.sum(codebook[c] ** 2, -1) - 2 * vectors @ codebook[c].T, axis=1)
        counts = np.bincount(nearest, minlength=size)
        p = counts[counts > 0] / counts.sum()
        usage.append(len(p) / size)
        perplexity.append(float(np.exp(-np.sum(p * np.log(p)))))
    return {"codebook_usage": float(np.mean(usage)), "codebook_perplexity": float(np.mean(perplexity))}


def _codebook(lam_params: dict) -> np.ndarray:
    """The EMA codebook [C, K, d] among a quantized LAM's variables."""
    [codebook] = [np.asarray(v) for path, v in flatten_dict(lam_params["vq"]).items() if path[-1] == "codebook"]
    return codebook


def load_method(workdir: Path, method: str):
    """(config, LAM, its variables, decoder, the saved policy's decoder parameters) of a finished method."""
    policy_dir = workdir / method / "policy"
    checkpoints = workdir / method / "checkpoints" / "stage1"
    if not (policy_dir / SPEC_FILE).exists() or not checkpoints.exists():
        raise DataError(f"{workdir / method} has no finished LAM (stage-1 checkpoint and saved policy); "
                        "analyse a method with a LAM and a decoder (clam, lapo) after training it.")
    spec = json.loads((policy_dir / SPEC_FILE).read_text())
    config = ml_collections.ConfigDict(spec["config"])
    lam, decoder = lam_and_decoder(config)
    like = clam.init_stage1(jax.random.key(0), lam, decoder, *stage1_optimizers(config))
    store = TrainStateCheckpoints(checkpoints)
    try:
        lam_params = store.restore(like).lam_params
    finally:
        store.close()
    decoder_params = ocp.StandardCheckpointer().restore(policy_dir / "params")["decoder"]
    return config, lam, lam_params, decoder, decoder_params


def analyze_method(workdir, method: str, *, probe_steps: int = 2000) -> dict:
    """The analysis of `method`'s LAM in `workdir` (see the module's docstring), plus the latents and true
    actions of the held-out D_unlabeled episodes for plots (`"latents"`, `"actions"`, not JSON)."""
    workdir = Path(workdir)
    config, lam, lam_params, decoder, decoder_params = load_method(workdir, method)
    datasets, stats = load_datasets(config, workdir)
    normalizer = make_normalizer(config, stats)
    batch = config.train.relabel_batch_size
    latents, actions, errors = {}, {}, {}
    for name, episodes in datasets.items():
        padded = padded_observations(config, normalizer, episodes)
        latents[name], errors[name] = clam.latents_and_errors(lam, lam_params, padded, batch_size=batch)
        actions[name] = episodes.actions[:, : latents[name].shape[1]]
    split = max(1, int(round((1 - HELD_OUT) * len(latents["unlabeled"]))))

    def flat(x):
        return x.reshape(-1, x.shape[-1])

    z_fit, a_fit = flat(latents["unlabeled"][:split]), flat(actions["unlabeled"][:split])
    held_out = {"held_out": (flat(latents["unlabeled"][split:]), flat(actions["unlabeled"][split:])),
                "expert": (flat(latents["expert"]), flat(actions["expert"]))}
    probes = {"linear": linear_probe(z_fit, a_fit), "mlp": mlp_probe(z_fit, a_fit, steps=probe_steps)}
    decode = jax.jit(decoder.apply)
    decoded = {name: np.asarray(decode(decoder_params, z)) for name, z in latents.items()}
    weights = {name: lag_weights(decoded[name], actions[name]) for name in ("labeled", "expert")}
    z_all = flat(latents["unlabeled"])
    report = {
        "method": method, "task": config.task, "latent_dim": int(z_all.shape[-1]),
        **{f"{kind}_probe_r2_{name}": r2_score(a, probe(z))
           for kind, probe in probes.items() for name, (z, a) in held_out.items()},
        **{f"decoder_mse_{name}": float(np.mean(np.square(decoded[name] - actions[name]))) for name in datasets},
        **{f"label_lag_weights_{name}": w.tolist() for name, w in weights.items()},
        **{f"label_weight_current_{name}": float(w[:, LABEL_LAGS.index(0)].mean()) for name, w in weights.items()},
        **{f"{kind}_loss_{name}": float(errors[name][..., i].mean())
           for name in ("unlabeled", "expert") for i, kind in enumerate(("recon", "cheat"))},
        "latent_variance": z_all.var(0).tolist(),
        "effective_rank": effective_rank(z_all),
    }
    if config.lam.codebook_size:
        report.update(codebook_usage(z_all, _codebook(lam_params), config.lam.tokens))
    return {**report, "latents": held_out["held_out"][0], "actions": held_out["held_out"][1]}


def json_ready(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("latents", "actions")}


ROWS = [("linear probe R² (held-out / expert)", "linear_probe_r2_held_out", "linear_probe_r2_expert"),
        ("MLP probe R² (held-out / expert)", "mlp_probe_r2_held_out", "mlp_probe_r2_expert"),
        ("decoder MSE (D_labeled / D_unlabeled)", "decoder_mse_labeled", "decoder_mse_unlabeled"),
        ("decoder MSE (expert)", "decoder_mse_expert", None),
        ("decoded label's weight on a_t (D_labeled / expert)", "label_weight_current_labeled",
         "label_weight_current_expert"),
        ("reconstruction / cheat loss (D_unlabeled)", "recon_loss_unlabeled", "cheat_loss_unlabeled"),
        ("reconstruction / cheat loss (expert)", "recon_loss_expert", "cheat_loss_expert"),
        ("effective rank / latent dim", "effective_rank", "latent_dim"),
        ("codebook usage / perplexity", "codebook_usage", "codebook_perplexity")]


def format_table(reports: list[dict]) -> str:
    """A markdown table: one row per measure, one column per analysed method."""
    def cell(report, key):
        value = report.get(key)
        return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| | " + " | ".join(r["method"] for r in reports) + " |", "|---|" + "---|" * len(reports)]
    for label, first, second in ROWS:
        if all(first not in r for r in reports):
            continue
        values = [cell(r, first) + ("" if second is None else " / " + cell(r, second)) for r in reports]
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def analyze_run(workdir, methods=None, *, probe_steps: int = 2000) -> list[dict]:
    """Analyses every method of the run with a LAM and a decoder (or `methods`); see `analyze_method`."""
    workdir = Path(workdir)
    found = [m for m in ("clam", "lapo") if (workdir / m / "checkpoints" / "stage1").exists()]
    methods = list(methods or found)
    if not methods:
        raise DataError(f"{workdir} has no method with a LAM to analyse (clam, lapo); train one first.")
    return [analyze_method(workdir, method, probe_steps=probe_steps) for method in methods]
