"""Crash signatures from real-world stderr texts (conv-verification.md §5)."""

from __future__ import annotations

from provision.convcheck.crash import classify, signal_name

ROCR_FAULT = (
    "some output\nMemory access fault by GPU node-1 (Agent handle: 0x556e9b7e3360) on address 0x7f52c3f5f000. "
    "Reason: Page not present or supervisor privilege.\nAborted (core dumped)\n"
)


def test_memory_access_fault_with_sigabrt() -> None:
    rec = classify(-6, ROCR_FAULT)
    assert rec["kind"] == "gpu_memory_fault"
    assert rec["gpu_node"] == 1 and rec["address"] == "0x7f52c3f5f000"
    assert rec["reason"] == "Page not present or supervisor privilege"
    assert rec["signal"] == "SIGABRT"
    assert rec["summary"] == "GPU memory access fault on node-1 (Page not present or supervisor privilege); SIGABRT"


def test_fault_with_inexact_address_and_hw_exception() -> None:
    text = ("Memory access fault by GPU node-2 (Agent handle: 0x5640a8bb1980) on address (nil)(may not be exact "
            "address). Reason: Write access to a read-only page.\nHW Exception by GPU node-2 (Agent handle: 0x1) "
            "reason :GPU Hang\n")
    rec = classify(134, text)
    assert rec["kind"] == "gpu_memory_fault" and rec["reason"] == "Write access to a read-only page"
    assert rec["signal"] == "SIGABRT"  # a shell's 128+6


def test_hsa_status_error() -> None:
    text = (":0:rocdevice.cpp            :2982: 1234 us: [pid:1 tid:0x7f] Callback: Queue 0x7f aborting with error : "
            "HSA_STATUS_ERROR_MEMORY_APERTURE_VIOLATION: The agent attempted to access memory beyond the largest "
            "legal address. code: 0x29\n")
    rec = classify(-6, text)
    assert rec["kind"] == "hsa_error"
    assert rec["hsa_status"] == "HSA_STATUS_ERROR_MEMORY_APERTURE_VIOLATION"


def test_hip_errors() -> None:
    rec = classify(-6, '"hipErrorNoBinaryForGpu: Unable to find code object for all current devices!"\n')
    assert rec["kind"] == "hip_error" and rec["hip_error"] == "hipErrorNoBinaryForGpu"
    rec = classify(3, "RuntimeError: HIP error: an illegal memory access was encountered\n")
    assert rec["kind"] == "hip_error" and rec["reason"] == "an illegal memory access was encountered"
    rec = classify(3, "torch.AcceleratorError: CUDA error: device-side assert triggered\n")
    assert rec["kind"] == "cuda_error"


def test_plain_signals_hang_and_exit() -> None:
    assert classify(-11, "Fatal Python error: Segmentation fault\n")["kind"] == "signal"
    assert classify(-11, "")["summary"] == "SIGSEGV"
    hang = classify(-9, "", timed_out=True)
    assert hang["kind"] == "hang" and "timeout" in hang["summary"]
    assert classify(1, "Traceback ...")["summary"] == "exit status 1"
    assert signal_name(0) is None and signal_name(-9) == "SIGKILL"
