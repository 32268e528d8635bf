"""Converts CALVIN's released play data (github.com/mees/calvin) into clam_jax datasets.

  python -m clam_jax.data.calvin --calvin_dir=/data/calvin/task_D_D --out=/data/calvin_clam

Reads a split as CALVIN releases it: `<split>/episode_XXXXXXX.npz`, one file per
recorded frame (`robot_obs` 15, `scene_obs` 24, `rel_actions` 7, `rgb_static`
200x200, ...), `ep_start_end_ids.npy` (the play episodes' first and last frame)
and `lang_annotations/auto_lang_ann.npy` (segments `info.indx` with their
`language.task`, unpickled by `clam_jax.data.safe_pickle`). Every annotated
segment becomes one RLDS episode of `--steps` policy steps whose behavior is its
task name: the state is robot_obs + scene_obs (39-D, as the paper), the action
rel_actions (7-D), and with `--image_size` the static camera's frame at that
size. With `--action_repeat` k a policy step spans k frames: its observation is
the first, its action the k frames' mean relative motion (repeated k times it
moves the arm as the k recorded commands did) with the first frame's gripper.
Segments too short for that, or crossing a play episode's end, are skipped and
counted. The datasets are written to `<out>/<split>` (`clam_jax.data.episodes`),
whose statistics.json lists each episode's task and frames under "calvin".

Frames are read by `--workers` processes in shards of `--shard_size` segments,
each kept in `<out>/.shards/<split>` as it finishes: an interrupted conversion
resumes from the shards it has, and only one shard per worker is in memory.
"""
import json
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import tqdm
from absl import app, flags

from clam_jax.data.episodes import Episodes, dataset_exists, write_episode_batches
from clam_jax.data.safe_pickle import load_object_npy
from clam_jax.data.statistics import dataset_statistics
from clam_jax.errors import ClamError, DataError

ANNOTATIONS = Path("lang_annotations") / "auto_lang_ann.npy"
EPISODE_BOUNDS = "ep_start_end_ids.npy"
GRIPPER = 6  # rel_actions: xyz (3), euler xyz (3), gripper (-1 close, 1 open)


def frame_path(split_dir: Path, frame: int) -> Path:
    return split_dir / f"episode_{frame:07d}.npz"


def annotated_segments(split_dir: Path) -> list[tuple[int, int, str]]:
    """(first frame, last frame, task) of every language-annotated segment of a split, in the file's order."""
    for required in (ANNOTATIONS, EPISODE_BOUNDS):
        if not (split_dir / required).exists():
            raise DataError(f"{split_dir} has no {required}; point --calvin_dir at a CALVIN download (e.g. "
                            "task_D_D) whose splits hold CALVIN's files as released.")
    annotations = load_object_npy(split_dir / ANNOTATIONS).item()
    bounds, tasks = annotations["info"]["indx"], annotations["language"]["task"]
    if len(bounds) != len(tasks):
        raise DataError(f"{split_dir / ANNOTATIONS} has {len(bounds)} segments but {len(tasks)} task names.")
    return [(int(start), int(end), str(task)) for (start, end), task in zip(bounds, tasks)]


def usable_segments(split_dir: Path, steps: int, action_repeat: int) -> tuple[list[tuple[int, int, str]], dict]:
    """The segments long enough for `steps` policy steps inside one play episode, and how many were skipped."""
    episodes = np.asarray(np.load(split_dir / EPISODE_BOUNDS), np.int64).reshape(-1, 2)
    kept, skipped = [], {"too_short": 0, "crossing_episodes": 0}
    for start, end, task in annotated_segments(split_dir):
        if start + steps * action_repeat > end:
            skipped["too_short"] += 1
        elif not np.any((episodes[:, 0] <= start) & (end <= episodes[:, 1])):
            skipped["crossing_episodes"] += 1
        else:
            kept.append((start, end, task))
    return kept, skipped


def resize(frame: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BILINEAR))


def segment_arrays(split_dir: Path, start: int, steps: int, action_repeat: int, image_size: int) -> dict:
    """One segment's states [steps + 1, 39], actions [steps + 1, 7] (the last zero) and frames."""
    states, commands, frames = [], [], []
    for f in range(start, start + steps * action_repeat + 1):
        with np.load(frame_path(split_dir, f)) as frame:
            if (f - start) % action_repeat == 0:
                states.append(np.concatenate([frame["robot_obs"], frame["scene_obs"]]).astype(np.float32))
                if image_size:
                    frames.append(resize(frame["rgb_static"], image_size))
            commands.append(frame["rel_actions"].astype(np.float32))
    steps_commands = np.stack(commands[:-1]).reshape(steps, action_repeat, -1)
    actions = steps_commands.mean(axis=1)
    actions[:, GRIPPER] = steps_commands[:, 0, GRIPPER]
    actions = np.concatenate([actions, np.zeros((1, actions.shape[1]), np.float32)])
    arrays = {"observations": np.stack(states), "actions": actions}
    if image_size:
        arrays["images"] = np.stack(frames).astype(np.uint8)
    return arrays


def _convert_shard(job: tuple) -> None:
    """Writes one shard's segments to its file (atomically)."""
    split_dir, path, segments, steps, action_repeat, image_size = job
    parts = [segment_arrays(Path(split_dir), start, steps, action_repeat, image_size) for start, _, _ in segments]
    arrays = {key: np.stack([part[key] for part in parts]) for key in parts[0]}
    partial = Path(path).with_suffix(".partial.npz")
    np.savez(partial, **arrays)
    os.replace(partial, path)


def shard_episodes(path: Path, tasks: list[str], with_images: bool = True) -> Episodes:
    """A shard's segments as episodes: no rewards, each a success (an annotated segment completes its task)."""
    with np.load(path) as shard:
        observations, actions = shard["observations"], shard["actions"]
        images = shard["images"] if with_images and "images" in shard else None
    n, length = actions.shape[:2]
    return Episodes(observations=observations, actions=actions, rewards=np.zeros((n, length), np.float32),
                    success=np.ones(n, bool), behavior=np.asarray(tasks), images=images)


def convert_split(split_dir: Path, out: Path, *, steps: int, action_repeat: int, image_size: int, workers: int,
                  shard_size: int) -> dict:
    """Converts one split into the dataset `out` (kept if it exists); returns its statistics."""
    if dataset_exists(out):
        print(f"{out} exists; kept")
        return json.loads((out / "statistics.json").read_text())
    segments, skipped = usable_segments(split_dir, steps, action_repeat)
    if not segments:
        raise DataError(f"No annotated segment of {split_dir} spans {steps} steps of {action_repeat} frames; "
                        "lower --steps.")
    params = {"source": str(split_dir.absolute()), "steps": steps, "action_repeat": action_repeat,
              "image_size": image_size, "shard_size": shard_size, "segments": len(segments)}
    work = out.parent / ".shards" / out.name
    work.mkdir(parents=True, exist_ok=True)
    if (work / "params.json").exists() and json.loads((work / "params.json").read_text()) != params:
        raise DataError(f"{work} holds shards of a conversion with other settings; delete it or choose another --out.")
    (work / "params.json").write_text(json.dumps(params, indent=2))
    shards = [segments[i:i + shard_size] for i in range(0, len(segments), shard_size)]
    paths = [work / f"shard_{i:05d}.npz" for i in range(len(shards))]
    jobs = [(str(split_dir), str(path), shard, steps, action_repeat, image_size)
            for path, shard in zip(paths, shards) if not path.exists()]
    with tqdm.tqdm(total=len(shards), initial=len(shards) - len(jobs), desc=f"convert {split_dir.name}",
                   unit="shard") as bar:
        if workers > 1 and len(jobs) > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for _ in pool.imap_unordered(_convert_shard, jobs):
                    bar.update(1)
        else:
            for job in jobs:
                _convert_shard(job)
                bar.update(1)
    tasks = [[task for _, _, task in shard] for shard in shards]
    states = [shard_episodes(path, names, with_images=False) for path, names in zip(paths, tasks)]
    everything = Episodes(**{key: np.concatenate([getattr(e, key) for e in states])
                             for key in ("observations", "actions", "rewards", "success", "behavior")})
    statistics = {**dataset_statistics(everything), **({"image_size": image_size} if image_size else {}),
                  "calvin": {**params, "skipped": skipped, "tasks": [task for _, _, task in segments],
                             "frames": [[start, end] for start, end, _ in segments]}}
    write_episode_batches(out, lambda: (shard_episodes(p, names) for p, names in zip(paths, tasks)), statistics)
    shutil.rmtree(work)
    print(f"{out}: {len(segments)} episodes of {steps} steps over {len(set(statistics['calvin']['tasks']))} tasks "
          f"(skipped: {skipped['too_short']} too short, {skipped['crossing_episodes']} crossing play episodes)")
    return statistics


FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.calvin_dir or not FLAGS.out:
        print("error: give --calvin_dir (a CALVIN download) and --out (where the datasets go).", file=sys.stderr)
        sys.exit(2)
    try:
        for split in FLAGS.splits:
            convert_split(Path(FLAGS.calvin_dir) / split, Path(FLAGS.out) / split, steps=FLAGS.steps,
                          action_repeat=FLAGS.action_repeat, image_size=FLAGS.image_size,
                          workers=FLAGS.workers or os.cpu_count(), shard_size=FLAGS.shard_size)
    except ClamError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    flags.DEFINE_string("calvin_dir", None, "A CALVIN download (e.g. .../task_D_D) holding the splits.")
    flags.DEFINE_string("out", None, "Where to write the datasets: <out>/<split>.")
    flags.DEFINE_list("splits", ["training", "validation"], "The splits to convert.")
    flags.DEFINE_integer("steps", 64, "Policy steps per episode cut from each annotated segment (CALVIN annotates "
                         "windows of 64 frames).")
    flags.DEFINE_integer("action_repeat", 1, "Recorded frames per policy step (use the evaluation's action repeat).")
    flags.DEFINE_integer("image_size", 0, "Also store the static camera's frames at this size (0: states only).")
    flags.DEFINE_integer("workers", 0, "Processes reading frames (0: one per core).")
    flags.DEFINE_integer("shard_size", 64, "Segments per shard (the unit of resumption and of memory).")
    app.run(main)
