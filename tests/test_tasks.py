"""Inner tasks: data, splits, loaders."""

import numpy as np
import pytest
import torch

from marl_net.tasks import make_task, sample_task_id, split_of
from marl_net.tasks.data import split_indices
from marl_net.tasks.mnist import MNIST_FILES, read_idx
from marl_net.tasks.multiplexer import multiplexer_labels
from tests.conftest import write_idx


def test_task_ids_of_the_two_splits_never_overlap():
    rng = np.random.default_rng(0)
    train = {sample_task_id(rng, "train") for _ in range(2000)}
    held = {sample_task_id(rng, "heldout") for _ in range(2000)}
    assert not train & held
    assert all(split_of(t) == "train" for t in train) and all(split_of(t) == "heldout" for t in held)
    with pytest.raises(ValueError, match="choose one of"):
        sample_task_id(rng, "test")


def test_teacher_student_instances_are_seeded_teachers():
    task = make_task("teacher_student", 5, 3, num_samples=64)
    a, b, c = task.instance(1), task.instance(1), task.instance(2)
    assert a.inputs.shape == (64, 5) and a.targets.shape == (64, 3)
    torch.testing.assert_close(a.targets, b.targets)
    assert not torch.allclose(a.targets, c.targets)
    noisy = make_task("teacher_student", 5, 3, num_samples=4000, label_noise=0.5).instance(1)
    clean = make_task("teacher_student", 5, 3, num_samples=4000).instance(1)
    torch.testing.assert_close(noisy.inputs, clean.inputs)
    assert abs(float((noisy.targets - clean.targets).std()) - 0.5) < 0.03


def test_teacher_classes_labels_are_the_regression_teachers_argmax():
    """The same teacher and inputs as teacher_student's instance, labelled by its largest output; the
    test split is fresh inputs labelled by that teacher (the same labels a hand-built teacher gives)."""
    from marl_net.network import forward, init_weights
    from marl_net.seeding import make_generators

    classes = make_task("teacher_classes", 5, 3, num_samples=256)
    regression = make_task("teacher_student", 5, 3, num_samples=256)
    a, r = classes.instance(7), regression.instance(7)
    torch.testing.assert_close(a.inputs, r.inputs)
    assert a.targets.dtype == torch.int64 and a.targets.tolist() == r.targets.argmax(-1).tolist()
    assert set(a.targets.tolist()) == {0, 1, 2}
    test = classes.test_data(7)
    assert test.inputs.shape == (256, 5) and not torch.allclose(test.inputs, a.inputs)
    weights, _ = init_weights(classes.spec, make_generators([7]))
    teacher = forward(classes.spec, [w[0] for w in weights], test.inputs).output
    assert test.targets.tolist() == teacher.argmax(-1).tolist()
    assert not torch.equal(classes.instance(8).targets, a.targets)
    with pytest.raises(ValueError, match="at least 2 outputs"):
        make_task("teacher_classes", 5, 1)


def test_digits_pools_are_disjoint_and_standardized():
    train_idx, held_idx = split_indices(1797, 0.3)
    assert len(set(train_idx) & set(held_idx)) == 0 and len(train_idx) + len(held_idx) == 1797
    task = make_task("digits")
    x_train, _ = task.pool("train")
    assert task.input_dim == 64 and task.output_dim == 10
    assert abs(float(x_train.mean())) < 1e-4
    pca = make_task("digits", pca=10)
    assert pca.input_dim == 10 and pca.instance(2**31 + 3).inputs.shape == (512, 10)
    torch.testing.assert_close(pca.pool("train")[0].std(0), torch.ones(10), atol=1e-3, rtol=0)


def test_data_task_instance_comes_from_its_split_pool():
    task = make_task("digits", num_samples=100)
    held_x, _ = task.pool("heldout")
    inst = task.instance(2**31 + 7)
    rows = {tuple(r.tolist()) for r in held_x}
    assert all(tuple(r.tolist()) in rows for r in inst.inputs)


def test_multiplexer_labels_by_hand():
    bits = -torch.ones(2, 20)
    bits[0, 3] = 1  # address 0001 -> data bit 1
    bits[0, 4 + 1] = 1
    bits[1, :4] = 1  # address 1111 -> data bit 15, which is -1
    assert multiplexer_labels(bits, 4).tolist() == [1, 0]
    task = make_task("multiplexer")
    inst = task.instance(5)
    assert inst.inputs.shape == (4096, 20) and set(inst.inputs.unique().tolist()) == {-1.0, 1.0}
    assert 0.4 < float(inst.targets.float().mean()) < 0.6


def test_idx_reader_round_trip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", arr)
    write_idx(tmp_path / "b.gz", arr, gz=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def test_mnist_loads_idx_files_and_projects_on_10_components(tiny_mnist_dir):
    task = make_task("mnist", data_dir=str(tiny_mnist_dir), num_samples=20)
    assert (task.input_dim, task.output_dim) == (10, 10)
    inst = task.instance(2**31 + 1)
    assert inst.inputs.shape == (20, 10) and inst.targets.dtype == torch.int64
    assert len(task.pool("heldout")[0]) == 30


def test_mnist_missing_files_name_the_expected_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        make_task("mnist", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="needs data_dir"):
        make_task("mnist")


def test_task_network_mismatch_names_the_right_sizes():
    with pytest.raises(ValueError, match=r"layers=\(64, \.\.\., 10\)"):
        make_task("digits", 8, 4)
    with pytest.raises(ValueError, match="unknown; choose one of"):
        make_task("cifar")


def test_teacher_student_instances_are_each_teacher_drawn_alone():
    """A reset builds its teachers in one batched call; each must be the teacher its id seeds on its
    own: weights, inputs, then label noise from the id's generator, through the teacher network."""
    from marl_net.network import forward, init_weights
    from marl_net.seeding import make_generators

    task = make_task("teacher_student", None, None, label_noise=0.1)
    ids = [3, 99, 12_345]
    inputs, targets = task.instances(ids)
    for i, task_id in enumerate(ids):
        gens = make_generators([task_id])
        weights, _ = init_weights(task.spec, gens)
        x = torch.randn(1, task.num_samples, task.input_dim, generator=gens[0])
        y = forward(task.spec, weights, x).output + 0.1 * torch.randn(1, task.num_samples, task.output_dim,
                                                                      generator=gens[0])
        assert torch.equal(inputs[i], x[0]) and torch.equal(targets[i], y[0])
        assert torch.equal(task.instance(task_id).targets, y[0])
