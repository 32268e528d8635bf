"""Checks run on a config before anything is collected or compiled."""
from clam_jax.envs import calvin
from clam_jax.envs.behaviors import check_behavior
from clam_jax.envs.tasks import LOCOMOTION_SUITES, suite_of
from clam_jax.errors import ConfigError
from clam_jax.models.lam import LAM_KINDS
from clam_jax.models.policies import IMAGE_ENCODERS
from clam_jax.rollout.chunking import EXECUTIONS

KNOWN_METHODS = ("clam", "bc", "bc_expert", "vpt", "lapo", "lapa", "dynamo", "clam_decoded")
IMAGE_METHODS = ("clam", "bc", "bc_expert", "lapo")  # the others' networks are MLPs over state vectors


def validate_config(config) -> None:
    """Raises ConfigError with one sentence naming the problem and the fix."""
    _validate_data(config)
    for method in config.methods:
        if method not in KNOWN_METHODS:
            raise ConfigError(f"Unknown method {method!r} in config.methods; use some of {KNOWN_METHODS}.")
    if config.lam.kind not in LAM_KINDS:
        raise ConfigError(f"Unknown config.lam.kind {config.lam.kind!r}; use one of {LAM_KINDS}.")
    _validate_observation(config)
    if config.lam.context < 0 or config.lam.future < 0 or config.lam.codebook_size < 0:
        raise ConfigError("config.lam.context, config.lam.future and config.lam.codebook_size must be >= 0.")
    if config.lam.difference_scale < 0 or (config.lam.difference_scale and config.lam.kind != "mlp"):
        raise ConfigError(f"config.lam.difference_scale={config.lam.difference_scale} must be >= 0, and > 0 only "
                          f"with config.lam.kind='mlp' (got {config.lam.kind!r}).")
    for name in ("lam", "lapo", "lapa"):
        section, split = config[name], config.lam.codebooks * config.lam.tokens
        if section.codebook_size and section.latent_dim % split:
            raise ConfigError(f"config.{name}.latent_dim={section.latent_dim} must be a multiple of "
                              f"config.lam.codebooks * config.lam.tokens = {split} for discrete latents.")
    k = config.train.steps_per_dispatch
    for key in ("log_every", "checkpoint_every"):
        if config.train[key] % k:
            raise ConfigError(
                f"config.train.{key}={config.train[key]} must be a multiple of "
                f"config.train.steps_per_dispatch={k}.")
    for name in ("stage1.steps", "stage1.separate_decoder_steps", "policy.steps"):
        section, key = name.split(".")
        if config[section][key] % k:
            raise ConfigError(
                f"config.{name}={config[section][key]} must be a multiple of "
                f"config.train.steps_per_dispatch={k}.")
    if config.train.compute_dtype not in ("float32", "bfloat16"):
        raise ConfigError(
            f"config.train.compute_dtype must be 'float32' or 'bfloat16', got {config.train.compute_dtype!r}.")
    if config.train.input not in ("device", "stream"):
        raise ConfigError(f"config.train.input must be 'device' or 'stream', got {config.train.input!r}.")
    if config.eval.split not in ("val", "test"):
        raise ConfigError(f"config.eval.split must be 'val' or 'test', got {config.eval.split!r}.")
    if config.policy.chunk < 1:
        raise ConfigError(f"config.policy.chunk (steps each policy predicts) must be >= 1, got {config.policy.chunk}.")
    if config.eval.chunk_execution not in EXECUTIONS:
        raise ConfigError(f"config.eval.chunk_execution must be one of {EXECUTIONS}, "
                          f"got {config.eval.chunk_execution!r}.")
    if config.eval.ensemble_m < 0:
        raise ConfigError(f"config.eval.ensemble_m must be >= 0, got {config.eval.ensemble_m}.")


_SUITES = {"metaworld": ("MetaWorld", "configs/metaworld.py"), "dmc": ("dm_control", "configs/dmc.py"),
           "gym": ("gymnasium MuJoCo", "configs/dmc.py"), "calvin": ("CALVIN", "configs/calvin.py")}


def _regime(config) -> str:
    """The data regime the config describes: "locomotion", "calvin" or "metaworld"."""
    if "agent" in config:
        return "locomotion"
    return "calvin" if "converted" in config.data else "metaworld"


def _validate_data(config) -> None:
    if config.labeled_from_unlabeled < 0:
        raise ConfigError(f"config.labeled_from_unlabeled must be >= 0 (0: the collected D_labeled), got "
                          f"{config.labeled_from_unlabeled}.")
    suite = suite_of(config.task)
    locomotion = suite in LOCOMOTION_SUITES
    if ("locomotion" if locomotion else suite) != _regime(config):
        name, path = _SUITES[suite]
        raise ConfigError(f"{config.task} is a {name} task; use it with {path}, whose data regime is made for it.")
    if suite == "calvin":
        _validate_calvin(config)
        return
    for name in ("labeled", "expert") if locomotion else ("unlabeled", "labeled", "expert"):
        spec = config.data[name]
        if spec.episodes < 1:
            raise ConfigError(f"config.data.{name}.episodes must be at least 1, got {spec.episodes}.")
        for behavior in () if locomotion else spec.behaviors:
            check_behavior(behavior)
    if locomotion and config.observation == "image":
        raise ConfigError("Locomotion datasets hold states only: use config.observation='state'.")


def _validate_calvin(config) -> None:
    data = config.data
    if not data.converted:
        raise ConfigError("Set config.data.converted to the output of `python -m clam_jax.data.calvin` (CALVIN's "
                          "play data converted to clam_jax datasets).")
    if not 0 < data.unlabeled_fraction <= 1:
        raise ConfigError(f"config.data.unlabeled_fraction must be in (0, 1], got {data.unlabeled_fraction}.")
    unknown = [task for task in data.labeled.tasks if task not in calvin.TASKS]
    if unknown:
        raise ConfigError(f"config.data.labeled.tasks has tasks CALVIN does not: {unknown}; use some of "
                          f"{list(calvin.TASKS)}.")
    if calvin.target_task(config.task) in data.labeled.tasks:
        raise ConfigError(f"config.data.labeled.tasks holds the target task {calvin.target_task(config.task)!r}; "
                          "the experiment transfers to a task without action labels.")
    if data.labeled.episodes < 0 or data.expert.episodes < 0:
        raise ConfigError("config.data.labeled.episodes and config.data.expert.episodes must be >= 0 (0: all).")


def _validate_observation(config) -> None:
    if config.observation not in ("state", "image"):
        raise ConfigError(f"config.observation must be 'state' or 'image', got {config.observation!r}.")
    if config.image_size < 0:
        raise ConfigError(f"config.image_size must be >= 0 (0: no frames), got {config.image_size}.")
    if config.proprio and config.observation != "image":
        raise ConfigError("config.proprio puts the arm's proprioception beside frames; state vectors hold it "
                          "already: use it with config.observation='image'.")
    if config.observation == "state":
        if config.lam.kind == "space_time":
            raise ConfigError("The Space-Time LAM reads frames: set config.observation='image' and "
                              "config.image_size (see configs/metaworld_images.py), or use lam.kind 'mlp'.")
        return
    if config.lam.kind != "space_time":
        raise ConfigError(f"config.observation='image' needs config.lam.kind='space_time', got {config.lam.kind!r}.")
    if config.unlabeled_includes_expert or config.labeled_from_unlabeled:
        raise ConfigError("config.unlabeled_includes_expert and config.labeled_from_unlabeled are options for state "
                          "observations: frames stream the datasets from their files.")
    patch = config.lam.space_time.patch_size
    if config.image_size < patch or config.image_size % patch:
        raise ConfigError(f"config.image_size={config.image_size} must be a positive multiple of "
                          f"config.lam.space_time.patch_size={patch}.")
    unsupported = [m for m in config.methods if m not in IMAGE_METHODS]
    if unsupported:
        raise ConfigError(f"Methods {unsupported} train on state vectors only; with config.observation='image' "
                          f"use some of {IMAGE_METHODS}.")
    if config.policy.image_encoder not in IMAGE_ENCODERS:
        raise ConfigError(f"config.policy.image_encoder must be one of {IMAGE_ENCODERS}, "
                          f"got {config.policy.image_encoder!r}.")
