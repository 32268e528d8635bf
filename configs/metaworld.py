"""CLAM on MetaWorld state observations (paper section 4, Appendix D, Tables 10, 11, 14).

Variants, chosen with `--config=configs/metaworld.py:<variant>`:
  (none)  paper scale: 1000 mixed + 100 play + 100 expert episodes, hidden 1024,
          500k stage-1 updates, 150k policy updates. GPU work.
  quick   a small model and dataset for a 2-core CPU: the whole pipeline
          (collect, stage 1, relabel, stage 2, BC baselines, evaluation) in minutes.
  tiny    a smoke test of the whole pipeline for the test suite (seconds of training).
"""
import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.variant = variant or "paper"
    c.task = "assembly-v3"
    c.seed = 0
    c.max_steps = 100  # policy steps per episode (Table 14)
    c.action_repeat = 2
    # What the models see: "state" (the 39-D vector) or "image" (the corner camera's frames, which
    # `image_size` > 0 renders into the datasets beside the states; configs/metaworld_images.py).
    c.observation = "state"
    c.image_size = 0
    # With frames: also give every model the arm's proprioceptive state (hand position and gripper
    # opening, the state's first 4 entries); the paper's text describes it for its robot policies.
    c.proprio = False

    # The data regime of DESIGN.md: every dataset cycles through its behaviours.
    c.data = ml_collections.ConfigDict()
    c.data.num_workers = 0  # 0: one per available core
    c.data.unlabeled = dict(
        episodes=1000,
        behaviors=("expert", "expert_noise0.1", "expert_noise0.3", "expert_noise0.5",
                   "expert_noise1.0", "random"),
        only_failures=False)
    # Play data: the expert with temporally correlated (OU) noise, plus random actions, failed
    # episodes only. Measured on assembly-v3 (quick preset, val variations): with i.i.d.-noise play
    # instead (same IDM window), CLAM fell from 0.65 to 0.12 success (README, "Measurements").
    c.data.labeled = dict(
        episodes=100,
        behaviors=("expert_ou0.3", "expert_ou0.5", "expert_ou1.0", "random"),
        only_failures=True)
    c.data.expert = dict(episodes=100, behaviors=("expert",), only_failures=False)
    # The paper assumes D_unlabeled-expert is part of D_unlabeled: True adds the expert episodes' observations to
    # D_unlabeled (and its normalization moments) for every method that reads it. MetaWorld's D_unlabeled already
    # holds the scripted expert's behaviour; DMC's (the SAC buffer up to half the final return) holds none of it.
    c.unlabeled_includes_expert = False
    # > 0: D_labeled is that many episodes drawn from D_unlabeled with their actions (the paper's locomotion
    # protocol subsamples medium-replay), not the collected play data.
    c.labeled_from_unlabeled = 0

    c.lam = ml_collections.ConfigDict()
    c.lam.kind = "mlp"  # "transformer": the paper's TF-CLAM (Table 12), e.g. --config.lam.kind=transformer
    c.lam.hidden = (1024, 1024)  # MLP LAM only
    c.lam.transformer = dict(embed_dim=256, num_heads=4, mlp_dim=2048, num_layers=3, dropout=0.1)
    # Space-Time LAM over frames (kind "space_time", configs/metaworld_images.py; sizes of Appendix G.3's printout;
    # residual: the FDM predicts the change from the frame before, not in the paper)
    c.lam.space_time = ml_collections.ConfigDict(dict(
        patch_size=16, embed_dim=256, num_heads=4, mlp_dim=2048, num_layers=3, dropout=0.1, residual=False))
    c.lam.latent_dim = 16
    # > 0: discrete latents, vector-quantized as `codebooks` x `tokens` codewords of EMA codebooks of this
    # size (LAPO's split: z cut into 8 vectors); the discrete ablation uses LAPO's sizes below.
    c.lam.codebook_size = 0
    c.lam.codebooks = 2
    c.lam.tokens = 4
    c.lam.context = 1  # H past frames: the IDM sees o[t-H .. t+1], the FDM o[t-H .. t]
    c.lam.future = 0  # frames after o[t+1] shown to the IDM only (not in the paper; quick uses 2)
    # > 0: the MLP IDM (and VPT's) also sees the window's frame-to-frame differences times this (not in the paper)
    c.lam.difference_scale = 0.0

    c.decoder = ml_collections.ConfigDict()
    c.decoder.embed_dim = 512
    c.decoder.hidden = (1024, 1024, 1024)

    c.stage1 = ml_collections.ConfigDict()
    c.stage1.steps = 500_000
    c.stage1.batch_size = 64
    c.stage1.labeled_batch_size = 128
    c.stage1.decoder_every = 2  # K: the decoder loss is applied every K-th step
    c.stage1.beta = 1.0  # weight of the decoder loss
    c.stage1.joint = True  # False: the LAM by reconstruction alone, then the decoder on its frozen latents
    c.stage1.separate_decoder_steps = 50_000  # decoder updates after the LAM when joint=False
    c.stage1.lr = 3e-4
    c.stage1.weight_decay = 1e-3
    c.stage1.decoder_lr = 1e-3
    c.stage1.decoder_weight_decay = 0.01
    c.stage1.warmup = 25_000
    c.stage1.clip = 1.0

    # Latent policy (stage 2) and the BC reference points share one recipe (Table 10).
    c.policy = ml_collections.ConfigDict()
    c.policy.hidden = (1024, 1024)
    c.policy.steps = 150_000
    c.policy.batch_size = 64
    c.policy.lr = 3e-4
    c.policy.weight_decay = 0.01
    c.policy.warmup = 25_000
    c.policy.clip = 1.0
    # Policies over frames (config.observation="image"): an IMPALA-CNN encoder (Appendix G.1) under the MLP
    # head; with init_from_idm, CLAM's latent policy instead starts from the Space-Time IDM's encoder (sec. 3.2).
    c.policy.image_encoder = "impala"
    c.policy.impala = ml_collections.ConfigDict(dict(channels=(16, 32, 32), features=256))
    c.policy.init_from_idm = False
    # Action chunking (paper Appendix F, its real-robot policies: 5): every policy predicts the next `chunk`
    # steps' actions (CLAM: latent actions, each decoded); clam_jax.rollout.chunking.
    c.policy.chunk = 1

    c.methods = ("clam", "bc", "bc_expert", "vpt", "lapo", "lapa", "dynamo")
    # LAPO's and LAPA's LAMs quantize their latents as LAPO does: 2 codebooks of 64 codewords, 4 tokens
    # each, 16 dims a token, so a 128-dim latent (their other sizes are the LAM's above).
    c.lapo = ml_collections.ConfigDict()
    c.lapo.codebook_size = 64
    c.lapo.latent_dim = 128
    c.lapa = ml_collections.ConfigDict()
    c.lapa.codebook_size = 64
    c.lapa.latent_dim = 128
    # DynaMo's encoder embeds each observation; its IDM and FDM take the LAM's sizes and window.
    c.dynamo = ml_collections.ConfigDict()
    c.dynamo.embed_dim = 256
    c.dynamo.covariance_weight = 0.04  # DynaMo's covariance regularizer coefficient

    c.train = ml_collections.ConfigDict()
    c.train.steps_per_dispatch = 500  # steps run by one jitted lax.scan call
    c.train.log_every = 5_000
    c.train.checkpoint_every = 50_000
    c.train.relabel_batch_size = 8192
    # Stage-1 input. "device": datasets copied to the accelerators once, batches sampled there (fastest
    # while they fit). "stream": batches read from the datasets on disk by `stream_workers` grain
    # processes, `windows_per_episode` windows per episode read, `prefetch` chunks ahead on the devices.
    c.train.input = "device"
    c.train.stream_workers = 2
    c.train.windows_per_episode = 8
    c.train.prefetch = 2
    c.train.compute_dtype = "float32"  # "bfloat16": mixed precision (float32 params and optimizer states)
    c.train.compilation_cache_dir = ""  # a directory for JAX's persistent compilation cache; "" = off

    c.eval = ml_collections.ConfigDict()
    c.eval.episodes = 40
    c.eval.split = "test"  # "val" for development; "test" variations are for reporting only
    c.eval.num_workers = 0
    c.eval.videos = 0  # episodes to render to workdir/videos (needs MUJOCO_GL=egl)
    # How a chunking policy acts: "ensemble" (queried every step, its predictions for a step averaged with
    # weights exp(-m * age rank), m = ensemble_m; the paper's 0.5) or "open_loop" (each chunk executed whole).
    c.eval.chunk_execution = "ensemble"
    c.eval.ensemble_m = 0.5

    if variant == "quick":
        c.data.unlabeled.episodes = 400
        c.data.labeled.episodes = 100
        c.lam.hidden = (512, 512)
        c.lam.future = 2  # the hand lags its command: o[t+2], o[t+3] reveal a_t (README, "Measurements")
        # --config.lam.kind=transformer at a CPU size: 2 + 2 layers of d 128 (the paper's 3 + 3 of d 256 run at
        # ~7.5 steps/s here, DESIGN.md).
        c.lam.transformer = dict(embed_dim=128, num_heads=4, mlp_dim=512, num_layers=2, dropout=0.1)
        c.decoder.embed_dim = 128
        c.decoder.hidden = (512, 512)
        c.dynamo.embed_dim = 128
        c.stage1.steps = 20_000
        c.stage1.warmup = 1_000
        c.stage1.separate_decoder_steps = 5_000
        c.policy.hidden = (512, 512)
        c.policy.steps = 10_000
        c.policy.warmup = 500
        c.train.steps_per_dispatch = 500
        c.train.log_every = 1_000
        c.train.checkpoint_every = 5_000
        c.eval.episodes = 30
    elif variant == "tiny":
        c.data.unlabeled.episodes = 12
        c.data.labeled.episodes = 4
        c.data.expert.episodes = 4
        c.data.num_workers = 2
        c.max_steps = 20
        c.lam.hidden = (32, 32)
        c.lam.latent_dim = 4
        c.decoder.embed_dim = 16
        c.decoder.hidden = (32, 32)
        c.dynamo.embed_dim = 8
        c.lapo.latent_dim = c.lapa.latent_dim = 8
        c.stage1.steps = 40
        c.stage1.separate_decoder_steps = 20
        c.stage1.batch_size = 16
        c.stage1.labeled_batch_size = 16
        c.stage1.warmup = 10
        c.policy.hidden = (32, 32)
        c.policy.steps = 40
        c.policy.batch_size = 16
        c.policy.warmup = 10
        c.train.steps_per_dispatch = 10
        c.train.log_every = 20
        c.train.checkpoint_every = 20
        c.train.relabel_batch_size = 64
        c.eval.episodes = 4
        c.eval.num_workers = 2
    elif variant not in ("", "paper"):
        raise ValueError(f"Unknown variant {variant!r}; use one of: paper (default), quick, tiny.")
    return c
