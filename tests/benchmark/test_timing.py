"""Tests for monai_moco.benchmark.timing (interleaved timing, paired ratios, FLOP counting, op profile, JSON lines)."""

from __future__ import annotations

import io
import json

import pytest
import torch

from monai_moco.benchmark.timing import (
    count_flops,
    cpu_model,
    machine_info,
    matmul_peak_flops,
    median,
    op_category,
    op_time_shares,
    paired_ratios,
    print_json_line,
    time_interleaved,
)


def test_median_and_paired_ratios():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert paired_ratios([2.0, 9.0], [1.0, 3.0]) == [2.0, 3.0]
    with pytest.raises(ValueError):
        median([])
    with pytest.raises(ValueError):
        paired_ratios([1.0], [1.0, 2.0])


def test_time_interleaved_rotates_order_and_counts_items():
    calls: list[str] = []

    def runner(name: str, items: int):
        def run() -> int:
            calls.append(name)
            return items

        return run

    rates = time_interleaved({"a": runner("a", 10), "b": runner("b", 20), "c": runner("c", 5)}, repeats=3, warmup=1)
    assert calls == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {k: len(v) for k, v in rates.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(r > 0 for v in rates.values() for r in v)
    with pytest.raises(ValueError):
        time_interleaved({"a": runner("a", 1)}, repeats=0)


@pytest.mark.parametrize("batch,fin,fout", [(4, 8, 16), (32, 64, 10)])
def test_count_flops_linear_forward_backward(batch: int, fin: int, fout: int):
    layer = torch.nn.Linear(fin, fout)
    x = torch.randn(batch, fin, requires_grad=True)
    assert count_flops(lambda: layer(x)) == 2 * batch * fin * fout
    # backward: gradient w.r.t. the input and the weight, one matmul each
    assert count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * batch * fin * fout


def test_count_flops_includes_attention():
    q = torch.randn(2, 3, 17, 8, requires_grad=True)
    forward = 2 * (2 * 2 * 3 * 17 * 17 * 8)  # q @ k^T and attn @ v
    attention = torch.nn.functional.scaled_dot_product_attention
    assert count_flops(lambda: attention(q, q, q).sum().backward()) == 3 * forward


def test_matmul_peak_and_machine_info():
    assert matmul_peak_flops(torch.float32, size=256, repeats=2) > 1e8
    assert matmul_peak_flops(torch.bfloat16, size=256, repeats=2) > 1e8
    info = machine_info()
    assert info["threads"] == torch.get_num_threads() and isinstance(info["bf16_native"], bool)
    assert info["cpu"] == cpu_model() and info["cpu"].strip()


def test_cpu_model_reads_the_model_name(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: avx2\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: real_open(cpuinfo if f == "/proc/cpuinfo" else f, *a, **k))
    assert cpu_model() == "AMD EPYC 7B13"


def test_print_json_line_rounds_floats():
    buf = io.StringIO()
    print_json_line({"case": "x", "v": 12.345678, "l": [1.0 / 3.0], "d": {"r": 2.0 / 3.0}, "n": None}, file=buf)
    text = buf.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    assert json.loads(text) == {"case": "x", "v": 12.35, "l": [0.3333], "d": {"r": 0.6667}, "n": None}


@pytest.mark.parametrize(
    "mm_256, conv_per_image, sizes, batches",
    [
        # slow (emulated) products: 0.5 s per 256 multiply, 1 s per conv image; the next size would not fit in 2 s
        (0.5, 1.0, [256, 256, 256, 256], [4, 4, 4, 4]),
        # fast products grow to the largest size whose 3 extrapolated products fit in 2 s
        (1e-3, 1e-3, [256, 512, 1024, 1024, 1024, 1024], [4, 8, 16, 16, 16, 16]),
        (0.05, 0.05, [256, 512, 512, 512, 512], [4, 8, 8, 8, 8]),
    ],
)
def test_matmul_peak_grows_the_size_only_while_products_fit(monkeypatch, mm_256, conv_per_image, sizes, batches):
    clock = {"now": 0.0}
    seen_sizes: list[int] = []
    seen_batches: list[int] = []

    def fake_mm(a, b):
        seen_sizes.append(a.shape[0])
        clock["now"] += mm_256 * (a.shape[0] / 256) ** 3

    def fake_conv(x, w, padding):
        assert padding == 1 and w.shape == (256, 256, 3, 3) and x.is_contiguous(memory_format=torch.channels_last)
        seen_batches.append(x.shape[0])
        clock["now"] += conv_per_image * x.shape[0]

    monkeypatch.setattr(torch, "mm", fake_mm)
    monkeypatch.setattr(torch.nn.functional, "conv2d", fake_conv)
    monkeypatch.setattr("monai_moco.benchmark.timing.time.perf_counter", lambda: clock["now"])
    peak = matmul_peak_flops(torch.float32, size=1024, repeats=3, max_seconds=2.0)
    assert seen_sizes == sizes and seen_batches == batches  # one warm-up per size tried, then 3 timed products
    n, batch = sizes[-1], batches[-1]
    mm_rate = 2.0 * n**3 / (mm_256 * (n / 256) ** 3)
    conv_rate = 2.0 * batch * 256**2 * 9 * 16**2 / (conv_per_image * batch)
    assert peak == pytest.approx(max(mm_rate, conv_rate))  # the faster library wins


@pytest.mark.parametrize(
    ("name", "category"),
    [("aten::addmm", "matmul"), ("aten::mm", "matmul"), ("aten::bmm", "matmul"),
     ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"),
     ("aten::convolution_backward", "convolution"), ("aten::mkldnn_convolution", "convolution"),
     ("aten::native_layer_norm_backward", "normalisation"), ("aten::native_batch_norm", "normalisation"),
     ("aten::gelu_backward", "activation"), ("aten::threshold_backward", "activation"),
     ("aten::copy_", "copy_cast"), ("aten::_to_copy", "copy_cast"), ("aten::cat", "copy_cast"),
     ("aten::_fused_sgd_", "optimizer_momentum"), ("aten::_foreach_lerp_", "optimizer_momentum"),
     ("aten::linalg_vector_norm", "other"), ("aten::add_", "other"), ("aten::mm_fake", "other")],
)  # fmt: skip
def test_op_category(name: str, category: str):
    assert op_category(name) == category


def test_op_time_shares_of_a_training_step():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.LayerNorm(512))
    x = torch.randn(64, 256)

    def step() -> None:
        model(x.double().float()).sum().backward()  # a cast round trip: copy_cast

    step()
    out = op_time_shares(step, top=3)
    shares = out["shares"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert {"matmul", "activation", "normalisation", "copy_cast"} <= set(shares)
    assert list(shares.values()) == sorted(shares.values(), reverse=True)
    assert 0 < out["op_ms"] <= out["wall_ms"] * 1.05  # self times do not overlap (one thread)
    assert len(out["top_ops"]) == 3 and all(op["name"].startswith("aten::") for op in out["top_ops"])
    assert [op["share"] for op in out["top_ops"]] == sorted((op["share"] for op in out["top_ops"]), reverse=True)
    assert out["top_ops"][0]["category"] == op_category(out["top_ops"][0]["name"])
