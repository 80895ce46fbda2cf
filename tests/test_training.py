"""The one trainer (probinfer.nn.training.fit): exact answers on least squares, epochs that visit
every row once, skipped non-finite steps, validation and early stopping, copies with their own
hyperparameters, and a resumed run equal to an uninterrupted one."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from probinfer.errors import DataError
from probinfer.nn.training import Trainer, fit, train_steps


def _regression(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    w = np.array([1.0, -2.0, 0.5], np.float32)
    y = (x @ w + 0.1 * rng.normal(size=n)).astype(np.float32)
    return {"x": x, "y": y}


def _mse(params, key, batch):
    return jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)


def test_fit_reaches_the_least_squares_solution():
    data = _regression()
    exact = np.linalg.lstsq(data["x"], data["y"], rcond=None)[0]
    result = fit(
        _mse, {"w": jnp.zeros(3)}, key=jax.random.key(0), num_steps=3000,
        optimizer=optax.adam(optax.cosine_decay_schedule(3e-2, 3000, alpha=1e-3)),
        data=data, batch_size=64, progress=False,
    )  # fmt: skip
    # Minibatch Adam with a decayed step ends within a small fraction of the coefficients' sd.
    np.testing.assert_allclose(np.asarray(result.params["w"]), exact, atol=2e-3)
    assert result.losses.shape == (3000,) and result.num_steps == 3000
    assert not result.skipped.any()


def test_every_row_is_used_once_per_epoch():
    data = {"i": np.arange(40, dtype=np.float32)}
    seen = []

    def loss(params, key, batch):
        return jnp.sum(params * 0.0) + jnp.sum(batch["i"]) * 0.0

    def record(params, key, batch):
        return loss(params, key, batch), batch["i"]

    result = fit(
        record,
        jnp.zeros(()),
        key=jax.random.key(1),
        num_steps=12,
        optimizer=optax.sgd(0.1),
        data=data,
        batch_size=10,
        has_aux=True,
        progress=False,
    )
    rows = np.asarray(result.aux)  # (12, 10): epochs of 4 steps
    for epoch in range(3):
        seen = np.sort(rows[4 * epoch : 4 * epoch + 4].ravel())
        np.testing.assert_array_equal(seen, np.arange(40))
    assert not np.array_equal(rows[:4], rows[4:8])  # a fresh permutation per epoch


def test_non_finite_steps_are_skipped_and_counted():
    def loss(params, key, batch):
        bad = jax.random.uniform(key) < 0.25
        return jnp.where(bad, jnp.nan, (params - 3.0) ** 2)

    result = fit(
        loss,
        jnp.zeros(()),
        key=jax.random.key(2),
        num_steps=400,
        optimizer=optax.adam(0.05),
        progress=False,
    )
    assert 0.15 < result.skipped.mean() < 0.35  # 400 Bernoulli(0.25): sd 0.022
    assert np.isnan(result.losses[result.skipped]).all()
    assert abs(float(result.params) - 3.0) < 1e-2


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    data = _regression(64)
    kwargs = dict(
        key=jax.random.key(3),
        optimizer=optax.adam(1e-2),
        data=data,
        batch_size=16,
        progress=False,
        fingerprint={"run": 1},
        checkpoint_every=25,
    )
    whole = fit(_mse, {"w": jnp.zeros(3)}, num_steps=100, **kwargs)
    path = str(tmp_path / "fit.npz")
    fit(_mse, {"w": jnp.zeros(3)}, num_steps=100, checkpoint=path, **kwargs)
    # A second call finds the finished checkpoint; an interrupted one is simulated by a shorter
    # run's file being continued.
    short = str(tmp_path / "short.npz")
    kwargs["fingerprint"] = {"run": 2}
    first = fit(_mse, {"w": jnp.zeros(3)}, num_steps=100, checkpoint=short, **kwargs)
    again = fit(_mse, {"w": jnp.ones(3)}, num_steps=100, checkpoint=short, **kwargs)
    np.testing.assert_array_equal(np.asarray(first.params["w"]), np.asarray(again.params["w"]))
    np.testing.assert_allclose(
        np.asarray(whole.params["w"]), np.asarray(first.params["w"]), rtol=1e-6
    )
    np.testing.assert_allclose(whole.losses, again.losses, rtol=1e-6)


def test_resume_from_a_partial_checkpoint(tmp_path):
    from probinfer import checkpoint as ckpt

    data = _regression(64)
    kwargs = dict(
        key=jax.random.key(4),
        optimizer=optax.adam(1e-2),
        data=data,
        batch_size=16,
        progress=False,
        fingerprint={"run": 3},
        checkpoint_every=30,
    )
    whole = fit(_mse, {"w": jnp.zeros(3)}, num_steps=90, **kwargs)
    path = str(tmp_path / "part.npz")
    real_save = ckpt.save
    calls = []

    def stop_after_one(*args):
        real_save(*args)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    ckpt.save = stop_after_one
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(_mse, {"w": jnp.zeros(3)}, num_steps=90, checkpoint=path, **kwargs)
    finally:
        ckpt.save = real_save
    resumed = fit(_mse, {"w": jnp.zeros(3)}, num_steps=90, checkpoint=path, **kwargs)
    np.testing.assert_allclose(
        np.asarray(resumed.params["w"]), np.asarray(whole.params["w"]), rtol=1e-6
    )
    np.testing.assert_allclose(resumed.losses, whole.losses, rtol=1e-6)


def test_validation_keeps_the_best_parameters_and_early_stopping_ends_the_run():
    # Fit noise: the training loss keeps falling while the held-out loss rises after a while.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 30)).astype(np.float32)
    data = {"x": x[:20], "y": rng.normal(size=20).astype(np.float32)}
    held = {"x": x[20:], "y": rng.normal(size=20).astype(np.float32)}
    result = fit(
        _mse, {"w": jnp.zeros(30)}, key=jax.random.key(5), num_steps=5000,
        optimizer=optax.adam(1e-2), data=data, batch_size=20, validation=held,
        early_stopping={"patience": 20, "decays": 1, "factor": 0.1}, progress=False,
    )  # fmt: skip
    assert result.num_steps < 5000  # stopped early
    best = int(np.argmin(result.validation))
    assert int(result.best_step) == best + 1  # one step per epoch: validation i after step i+1
    value = float(_mse(result.params, None, held))
    assert value == pytest.approx(float(result.validation[best]), rel=1e-5)
    assert value < float(_mse({"w": jnp.zeros(30)}, None, held))


def test_copies_train_independently_with_their_own_hyperparameters():
    data = _regression(64)
    params = {"w": jnp.zeros((3, 3))}
    rates = jnp.array([1e-3, 1e-2, 1e-1])
    result = fit(
        _mse,
        params,
        key=jax.random.key(6),
        num_steps=50,
        optimizer=lambda rate: optax.sgd(rate),
        hyper=rates,
        copies=3,
        data=data,
        batch_size=16,
        progress=False,
    )
    for i, rate in enumerate(np.asarray(rates)):
        alone = fit(
            _mse,
            {"w": jnp.zeros(3)},
            key=jax.random.key(6),
            num_steps=50,
            optimizer=optax.sgd(float(rate)),
            data=data,
            batch_size=16,
            progress=False,
        )
        np.testing.assert_allclose(
            np.asarray(result.params["w"][i]), np.asarray(alone.params["w"]), rtol=1e-5, atol=1e-6
        )
    assert result.losses.shape == (50, 3)


def test_streams_give_each_group_of_copies_its_own_minibatches_and_keys():
    data = _regression(64)
    params = {"w": jnp.zeros((4, 3))}
    common = dict(key=jax.random.key(8), num_steps=30, data=data, batch_size=16, progress=False)

    def noisy(params, key, batch):  # the key matters too
        return _mse(params, key, batch) + 0.1 * jnp.sum(jax.random.normal(key, (3,)) * params["w"])

    result = fit(noisy, params, optimizer=lambda r: optax.sgd(r), hyper=jnp.full(4, 1e-2),
                 copies=4, streams=2, **common)  # fmt: skip
    w = np.asarray(result.params["w"])
    np.testing.assert_allclose(w[0], w[1], rtol=1e-6)  # one group: the same batches and keys
    np.testing.assert_allclose(w[2], w[3], rtol=1e-6)
    assert np.abs(w[0] - w[2]).max() > 1e-3  # another group: other batches
    shared = fit(noisy, params, optimizer=lambda r: optax.sgd(r), hyper=jnp.full(4, 1e-2),
                 copies=4, **common)  # fmt: skip
    same = np.asarray(shared.params["w"])  # without streams every copy sees the same
    np.testing.assert_allclose(same[3], same[0], rtol=1e-6)
    np.testing.assert_allclose(same[0], w[0], rtol=1e-6)  # and group 0 keeps the shared stream
    with pytest.raises(DataError, match="divide"):
        fit(noisy, params, optimizer=lambda r: optax.sgd(r), hyper=jnp.full(4, 1e-2),
            copies=4, streams=3, **common)  # fmt: skip


def test_with_hyper_gives_each_copy_its_own_loss():
    # Copy i fits the constant hyper[i]: with one shared loss, only its hyper row tells them apart.
    targets = jnp.array([-1.0, 0.5, 2.0])
    result = fit(lambda p, key, batch, h: (p["c"] - h) ** 2, {"c": jnp.zeros(3)},
                 key=jax.random.key(9), num_steps=300, optimizer=lambda h: optax.adam(0.05),
                 hyper=targets, copies=3, with_hyper=True, progress=False)  # fmt: skip
    np.testing.assert_allclose(np.asarray(result.params["c"]), np.asarray(targets), atol=1e-2)


def test_one_vector_trains_the_same_copies_as_the_pytree():
    """flat=True: the loop carries one vector per copy, the loss still reads the pytree; with
    copies, per-copy optimizers, clipping by the global norm, validation and early stopping,
    the run is the pytree run (the same arithmetic; float sums in another order)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    data = {"x": x[:40], "y": rng.normal(size=40).astype(np.float32)}
    held = {"x": x[40:], "y": rng.normal(size=20).astype(np.float32)}

    def loss(params, key, batch):
        fitted = batch["x"] @ params["w"]["kernel"] + params["b"]
        return jnp.mean((fitted - batch["y"]) ** 2)

    params = {"w": {"kernel": jnp.zeros((2, 4, 1))}, "b": jnp.ones((2, 1))}
    rates = jnp.array([1e-2, 5e-2])
    runs = {}
    for flat in (False, True):
        trainer = Trainer(
            loss, lambda r: optax.chain(optax.clip_by_global_norm(0.5), optax.adam(r)),
            copies=2, hyper=rates, early_stopping={"patience": 5, "decays": 1}, flat=flat,
        )  # fmt: skip
        runs[flat] = trainer.fit(params, key=jax.random.key(3), num_steps=400, data=data,
                                 batch_size=10, validation=held, progress=False)  # fmt: skip
        assert jax.tree.structure(runs[flat].params) == jax.tree.structure(params)
        pure = trainer.steps(params, key=jax.random.key(3), num_steps=8, data=data, batch_size=10)
        assert pure["w"]["kernel"].shape == (2, 4, 1)
    tree, vector = runs[False], runs[True]
    assert tree.num_steps < 400 and vector.num_steps == tree.num_steps  # stopped early alike
    np.testing.assert_array_equal(vector.best_step, tree.best_step)
    np.testing.assert_allclose(vector.validation, tree.validation, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(vector.params), jax.tree.leaves(tree.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="one floating dtype"):
        Trainer(loss, optax.adam(1e-2), flat=True).fit(
            {"w": jnp.zeros(4), "n": jnp.zeros((), jnp.int32)}, key=jax.random.key(0),
            num_steps=2, progress=False,
        )  # fmt: skip


def test_train_steps_is_traceable_and_equals_fit():
    data = _regression(64)
    kwargs = dict(num_steps=40, optimizer=optax.adam(1e-2), data=data, batch_size=16)
    pure = jax.jit(lambda key: train_steps(_mse, {"w": jnp.zeros(3)}, key=key, **kwargs))
    full = fit(_mse, {"w": jnp.zeros(3)}, key=jax.random.key(7), progress=False, **kwargs)
    np.testing.assert_allclose(
        np.asarray(pure(jax.random.key(7))["w"]), np.asarray(full.params["w"]), rtol=1e-6
    )


def test_bad_arguments_get_one_sentence():
    data = _regression(64)
    with pytest.raises(DataError, match="batch_size must be between 1 and the 64"):
        fit(
            _mse,
            {"w": jnp.zeros(3)},
            key=jax.random.key(0),
            num_steps=5,
            optimizer=optax.sgd(0.1),
            data=data,
            batch_size=100,
        )
    with pytest.raises(DataError, match="needs validation"):
        fit(
            _mse,
            {"w": jnp.zeros(3)},
            key=jax.random.key(0),
            num_steps=5,
            optimizer=optax.sgd(0.1),
            early_stopping={"patience": 2},
        )


def test_a_trainer_compiles_once_for_new_keys_and_data():
    from probinfer.nn.training import Trainer

    trainer = Trainer(_mse, optax.adam(1e-2))
    for seed in range(3):
        data = _regression(64, seed=seed)
        trainer.fit(
            {"w": jnp.zeros(3)},
            key=jax.random.key(seed),
            num_steps=20,
            data=data,
            batch_size=16,
            progress=False,
        )
    assert trainer._chunk._cache_size() == 1
