"""Loading tokenizer checkpoints: the demo, both key layouts, strict errors, the content hash.

The released key set at the real dimensions is tested in
`test_glm4voice_real_dims.py`; these tests use the small demo dimensions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.glm4voice import (
    DEMO_NOTE,
    CheckpointError,
    load_tokenizer,
    tokenizer_checkpoint_sha256,
    write_demo_checkpoint,
)
from inference.glm4voice import files as checkpoint_files
from inference.glm4voice.files import HASH_SIDECAR
from schemas.hashing import file_sha256


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_checkpoint(tmp_path_factory.mktemp("demo") / "glm4voice-demo")


def _copy(demo_dir: Path, destination: Path) -> Path:
    shutil.copytree(demo_dir, destination)
    (destination / HASH_SIDECAR).unlink(missing_ok=True)
    return destination


def _rewrite_weights(directory: Path, state: dict[str, torch.Tensor]) -> None:
    save_file({k: v.contiguous() for k, v in state.items()}, directory / "model.safetensors")


# --- the demo checkpoint -------------------------------------------------------------------


def test_demo_checkpoint_has_the_released_layout_and_is_deterministic(
    demo_dir: Path, tmp_path: Path
) -> None:
    assert sorted(p.name for p in demo_dir.iterdir() if not p.name.startswith(".")) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    config = json.loads((demo_dir / "config.json").read_text())
    assert config["voxlake_demo"] == DEMO_NOTE == "random weights: codes carry no meaning"
    assert (
        config["d_model"],
        config["encoder_layers"],
        config["encoder_attention_heads"],
        config["encoder_ffn_dim"],
    ) == (64, 4, 2, 128)
    assert (config["pooling_position"], config["quantize_position"]) == (4, 4)
    assert (
        config["quantize_vocab_size"],
        config["num_mel_bins"],
        config["max_source_positions"],
    ) == (16384, 128, 1500)
    state = load_file(demo_dir / "model.safetensors")
    assert len(state) == 4 + 1 + 4 * 15 + 4  # convs, positions, 4 layers, codebook/pos2/ema
    assert state["codebook.weight"].shape == (16384, 64)
    assert state["embed_positions2.weight"].shape == (375, 64)
    assert state["ema_count"].shape == (16384,) and state["ema_weight"].shape == (16384, 64)
    assert "layers.0.self_attn.k_proj.bias" not in state
    assert all(t.dtype == torch.float32 for t in state.values())
    again = write_demo_checkpoint(tmp_path / "again")
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (again / name).read_bytes() == (demo_dir / name).read_bytes(), name
    other = write_demo_checkpoint(tmp_path / "seed1", seed=1)
    assert (other / "model.safetensors").read_bytes() != (
        demo_dir / "model.safetensors"
    ).read_bytes()


def test_loading_the_demo_warns_and_flags_it(
    demo_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="inference.glm4voice.loading"):
        tokenizer = load_tokenizer(demo_dir)
    assert tokenizer.is_demo
    assert any("demo" in r.message and "carry no meaning" in r.message for r in caplog.records)
    assert tokenizer.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert tokenizer.dtype == torch.float32
    assert tokenizer.codes_per_second == 12.5 and tokenizer.samples_per_code == 1280


def test_half_precision_is_refused_off_cuda(
    demo_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="inference.glm4voice.loading"):
        tokenizer = load_tokenizer(demo_dir, device="cpu", dtype="bfloat16")
    assert tokenizer.dtype == torch.float32
    assert any("CUDA only" in r.message for r in caplog.records)
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_tokenizer(demo_dir, device="cpu", dtype="int8")


# --- layouts -------------------------------------------------------------------------------


def test_the_full_prefixed_layout_loads_dropping_later_layers_norm_and_decoder(
    demo_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A ForConditionalGeneration-style save: `model.encoder.` prefixes, 32 layers (16..31
    unused), the final `layer_norm`, a decoder and `proj_out`."""
    directory = _copy(demo_dir, tmp_path / "full")
    config = json.loads((directory / "config.json").read_text())
    config.update(
        {
            "encoder_layers": 32,
            "quantize_position": 16,
            "pooling_position": 16,
            "quantize_encoder_only": False,
        }
    )
    (directory / "config.json").write_text(json.dumps(config))
    source = load_file(demo_dir / "model.safetensors")
    generator = torch.Generator().manual_seed(5)
    state = {}
    for name, tensor in source.items():
        if not name.startswith("layers."):
            state[f"model.encoder.{name}"] = tensor
    for layer in range(32):
        for name, tensor in source.items():
            if name.startswith("layers.0."):
                suffix = name.removeprefix("layers.0.")
                state[f"model.encoder.layers.{layer}.{suffix}"] = (
                    torch.randn(tensor.shape, generator=generator) * 0.1
                )
    state["model.encoder.layer_norm.weight"] = torch.ones(64)
    state["model.encoder.layer_norm.bias"] = torch.zeros(64)
    state["model.decoder.embed_tokens.weight"] = torch.zeros(10, 64)
    state["proj_out.weight"] = torch.zeros(10, 64)
    _rewrite_weights(directory, state)
    with caplog.at_level(logging.INFO, logger="inference.glm4voice.loading"):
        tokenizer = load_tokenizer(directory)
    model = tokenizer.model
    assert len(model.layers) == 16 and not hasattr(model, "layer_norm")
    assert torch.equal(model.layers[15].fc1.weight, state["model.encoder.layers.15.fc1.weight"])
    assert torch.equal(model.codebook.weight, state["model.encoder.codebook.weight"])
    # 16 layers × 15 tensors, layer_norm ×2, decoder and proj_out
    assert any("left out 244 tensors" in r.message for r in caplog.records)
    assert len(tokenizer.tokenize([torch.zeros(16000).numpy()])[0]) == 13


def test_an_unprefixed_full_encoder_may_carry_its_unused_layers(
    demo_dir: Path, tmp_path: Path
) -> None:
    directory = _copy(demo_dir, tmp_path / "unprefixed-full")
    config = json.loads((directory / "config.json").read_text())
    config.update({"encoder_layers": 6, "quantize_encoder_only": False})
    (directory / "config.json").write_text(json.dumps(config))
    state = load_file(demo_dir / "model.safetensors")
    for layer in (4, 5):
        for name, tensor in list(state.items()):
            if name.startswith("layers.0."):
                state[name.replace("layers.0.", f"layers.{layer}.")] = tensor.clone()
    state["layer_norm.weight"], state["layer_norm.bias"] = torch.ones(64), torch.zeros(64)
    _rewrite_weights(directory, state)
    assert len(load_tokenizer(directory).model.layers) == 4
    # the released (encoder-only) config allows no such extras
    config["quantize_encoder_only"] = True
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="32 unexpected") as error:
        load_tokenizer(directory)
    assert "layer_norm.weight [64]" in str(error.value)
    assert "layers.5.fc1.weight [128, 64]" in str(error.value)


# --- strict errors -------------------------------------------------------------------------


def test_missing_unexpected_and_misshaped_keys_are_all_listed(
    demo_dir: Path, tmp_path: Path
) -> None:
    directory = _copy(demo_dir, tmp_path / "broken")
    state = load_file(demo_dir / "model.safetensors")
    del state["layers.2.fc1.weight"]
    del state["ema_count"]
    state["layers.0.self_attn.k_proj.bias"] = torch.zeros(64)
    state["extra_head.weight"] = torch.zeros(3, 4)
    state["codebook.weight"] = torch.zeros(100, 64)
    state["conv1.weight"] = torch.zeros(64, 80, 3)
    _rewrite_weights(directory, state)
    with pytest.raises(CheckpointError) as error:
        load_tokenizer(directory)
    message = str(error.value)
    assert "encoder only (no prefix)" in message
    assert "2 missing:\n  ema_count [16384]\n  layers.2.fc1.weight [128, 64]" in message
    assert (
        "2 unexpected:\n  extra_head.weight [3, 4]\n  layers.0.self_attn.k_proj.bias [64]"
        in message
    )
    assert (
        "2 with the wrong shape:\n  codebook.weight: expected [16384, 64], found [100, 64]\n"
        "  conv1.weight: expected [64, 128, 3], found [64, 80, 3]"
    ) in message
    assert isinstance(error.value, ValueError)  # callers catch ValueError


def test_a_prefixed_file_with_foreign_keys_is_rejected(demo_dir: Path, tmp_path: Path) -> None:
    directory = _copy(demo_dir, tmp_path / "foreign")
    state = {f"model.encoder.{k}": v for k, v in load_file(demo_dir / "model.safetensors").items()}
    state["lm_head.weight"] = torch.zeros(2, 2)
    state["model.encoder.layers.40.fc1.weight"] = torch.zeros(2, 2)  # past encoder_layers
    _rewrite_weights(directory, state)
    with pytest.raises(
        CheckpointError,
        match=re.escape(
            "2 unexpected:\n  lm_head.weight [2, 2]\n  model.encoder.layers.40.fc1.weight [2, 2]"
        ),
    ):
        load_tokenizer(directory)


def test_folders_without_safetensors_or_files_are_named(demo_dir: Path, tmp_path: Path) -> None:
    directory = _copy(demo_dir, tmp_path / "pickle")
    (directory / "model.safetensors").rename(directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"lacks model\.safetensors.*does not read"):
        load_tokenizer(directory)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")
    (directory / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_tokenizer(directory)


# --- content hash --------------------------------------------------------------------------


def test_checkpoint_hash_is_sha256sum_of_the_three_files(demo_dir: Path) -> None:
    listing = "".join(
        f"{hashlib.sha256((demo_dir / name).read_bytes()).hexdigest()}  {name}\n"
        for name in ("config.json", "model.safetensors", "preprocessor_config.json")
    )
    assert tokenizer_checkpoint_sha256(demo_dir) == hashlib.sha256(listing.encode()).hexdigest()
    assert load_tokenizer(demo_dir).checkpoint_sha256 == tokenizer_checkpoint_sha256(demo_dir)


def test_hashes_are_cached_by_size_and_mtime(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _copy(demo_dir, tmp_path / "cache")
    hashed: list[str] = []

    def counting(path: Path) -> str:
        hashed.append(Path(path).name)
        return file_sha256(path)

    monkeypatch.setattr(checkpoint_files, "file_sha256", counting)
    first = tokenizer_checkpoint_sha256(directory)
    assert sorted(hashed) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    sidecar = json.loads((directory / HASH_SIDECAR).read_text())
    assert (
        sidecar["files"]["model.safetensors"]["size"]
        == (directory / "model.safetensors").stat().st_size
    )
    hashed.clear()
    assert tokenizer_checkpoint_sha256(directory) == first and hashed == []
    # a changed config is re-hashed, alone, and changes the checkpoint hash
    config = directory / "config.json"
    config.write_text(config.read_text().replace('"d_model": 64', '"d_model": 64 '))
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed = tokenizer_checkpoint_sha256(directory)
    assert hashed == ["config.json"] and changed != first
    # a corrupt cache is ignored
    (directory / HASH_SIDECAR).write_text("{broken")
    hashed.clear()
    assert tokenizer_checkpoint_sha256(directory) == changed and len(hashed) == 3


def test_a_read_only_folder_still_hashes(
    demo_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = _copy(demo_dir, tmp_path / "readonly")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(checkpoint_files.tempfile, "mkstemp", refuse)
    with caplog.at_level(logging.WARNING, logger="inference.glm4voice.loading"):
        assert tokenizer_checkpoint_sha256(directory) == tokenizer_checkpoint_sha256(demo_dir)
    assert not (directory / HASH_SIDECAR).exists()
    assert any("cannot cache checkpoint hashes" in r.message for r in caplog.records)
