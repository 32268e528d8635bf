"""Window/label alignment on hand-made episodes: z_t belongs to o_t -> o_{t+1} and is labelled a_t."""
import jax
import numpy as np
import pytest

from clam_jax.data.windows import (all_windows, gather_windows, idm_inputs, pad_episodes, sample_windows,
                                   window_length)


def hand_made(num_episodes=3, steps=5):
    """observation[e, t] = 100 e + t (every feature), action[e, t] = 100 e + t + 0.5."""
    t = np.arange(steps + 1)
    obs = (100 * np.arange(num_episodes)[:, None] + t[None]).astype(np.float32)[..., None].repeat(2, -1)
    actions = obs[..., :1] + 0.5
    actions[:, -1] = 0.0  # the RLDS padding step
    return obs, actions


@pytest.mark.parametrize("context,future", [(0, 0), (1, 0), (2, 1)])
def test_window_holds_past_current_next_and_future_frames(context, future):
    obs, actions = hand_made()
    padded = pad_episodes(obs, context, future)
    window = window_length(context, future)
    for e in range(obs.shape[0]):
        for t in range(obs.shape[1] - 1):
            w = np.asarray(gather_windows(padded, np.array([e]), np.array([t]), window))[0, :, 0]
            expected = [100 * e + min(max(s, 0), obs.shape[1] - 1) for s in range(t - context, t + 2 + future)]
            np.testing.assert_array_equal(w, expected)
            assert w[context] == 100 * e + t and w[context + 1] == 100 * e + t + 1
            assert actions[e, t, 0] == w[context] + 0.5  # a_t is the action taken at o_t


def test_every_transition_appears_once_in_order_and_never_crosses_episodes():
    obs, _ = hand_made(num_episodes=2, steps=4)
    padded = pad_episodes(obs, 1, 0)
    windows = np.asarray(all_windows(padded, 3))[..., 0]
    assert windows.shape == (2 * 4, 3)
    current = windows[:, 1]
    np.testing.assert_array_equal(current, [0, 1, 2, 3, 100, 101, 102, 103])
    assert (windows // 100 == windows[:, :1] // 100).all()


def test_sampled_windows_and_labels_stay_aligned():
    obs, actions = hand_made(num_episodes=4, steps=10)
    padded = pad_episodes(obs, 1, 1)
    windows, episode, t = sample_windows(jax.random.key(0), padded, 256, 4)
    windows, labels = np.asarray(windows)[..., 0], actions[np.asarray(episode), np.asarray(t), 0]
    np.testing.assert_array_equal(labels, windows[:, 1] + 0.5)
    assert (np.asarray(t) < 10).all() and (windows // 100 == windows[:, :1] // 100).all()


def test_idm_inputs_are_the_frames_then_their_scaled_differences():
    windows = np.arange(12, dtype=np.float32).reshape(2, 3, 2) ** 2  # [B 2, W 3, D 2], steps of varying size
    np.testing.assert_array_equal(idm_inputs(windows), windows.reshape(2, 6))
    inputs = np.asarray(idm_inputs(windows, 10.0))
    assert inputs.shape == (2, 3 * 2 + 2 * 2)
    np.testing.assert_array_equal(inputs[:, :6], windows.reshape(2, 6))
    np.testing.assert_allclose(inputs[:, 6:].reshape(2, 2, 2), 10.0 * (windows[:, 1:] - windows[:, :-1]))
