"""Progress hooks: the no-op default, the tqdm renderer and the plain-callable adapter."""

import io

import pytest

from popcount_learn.progress import (
    CallbackProgress,
    NullProgress,
    Progress,
    ProgressEvent,
    TqdmProgress,
    as_progress,
)


def run_phase(progress: Progress, total: int, desc: str, losses) -> None:
    progress.start(total, desc)
    for loss in losses:
        progress.update(1, loss=loss, acc=0.5)
    progress.close()


def test_as_progress_normalises():
    assert isinstance(as_progress(None), NullProgress)
    bar = TqdmProgress(disable=True)
    assert as_progress(bar) is bar
    assert isinstance(as_progress(lambda event: None), CallbackProgress)
    with pytest.raises(TypeError, match="int"):
        as_progress(3)


def test_null_progress_accepts_the_protocol():
    progress = NullProgress()
    run_phase(progress, 3, "x", [1.0, 2.0, 3.0])
    progress.close()


def test_callback_receives_cumulative_events():
    events = []
    progress = as_progress(events.append)
    run_phase(progress, 3, "epoch 1", [0.9, 0.5, 0.25])
    progress.start(2, "eval")
    progress.update(2)
    assert events == [
        ProgressEvent("epoch 1", 0, 3, {}),
        ProgressEvent("epoch 1", 1, 3, {"loss": 0.9, "acc": 0.5}),
        ProgressEvent("epoch 1", 2, 3, {"loss": 0.5, "acc": 0.5}),
        ProgressEvent("epoch 1", 3, 3, {"loss": 0.25, "acc": 0.5}),
        ProgressEvent("eval", 0, 2, {}),
        ProgressEvent("eval", 2, 2, {}),
    ]


def test_tqdm_renders_desc_count_and_metrics():
    out = io.StringIO()
    progress = TqdmProgress(file=out, mininterval=0, ascii=True)
    run_phase(progress, 4, "epoch 7", [1.0, 0.5, 0.25, 0.123456])
    final_line = out.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert final_line.startswith("epoch 7")
    assert "4/4" in final_line
    assert "loss=0.1235" in final_line and "acc=0.5" in final_line
    progress.close()  # second close is harmless
    progress.update(1, loss=9.0)  # update outside a phase is ignored
    assert "loss=9" not in out.getvalue()


def test_tqdm_restart_closes_previous_bar():
    out = io.StringIO()
    progress = TqdmProgress(file=out, mininterval=0, ascii=True)
    progress.start(2, "first")
    progress.update(1)
    progress.start(3, "second")
    progress.update(3)
    progress.close()
    text = out.getvalue()
    assert "first" in text and "1/2" in text and "second" in text and "3/3" in text


def test_line_progress_prints_one_line_per_phase_without_carriage_returns():
    from popcount_learn.progress import LineProgress

    out = io.StringIO()
    progress = LineProgress(out)
    run_phase(progress, 500, "epoch 1/2", [0.5] * 500)
    run_phase(progress, 3, "epoch 2/2", [0.25, 0.125, 0.0625])
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2: 500/500 loss=0.5 acc=0.5 (") and lines[1].startswith(
        "epoch 2/2: 3/3 loss=0.0625"
    )


def test_line_progress_every_fraction_reports_shares_of_a_long_phase():
    from popcount_learn.progress import LineProgress

    out = io.StringIO()
    progress = LineProgress(out, every_fraction=0.25)
    progress.start(100, "board")
    for _ in range(100):
        progress.update(1)
    progress.close()
    done = [line.split(": ")[1].split(" ")[0] for line in out.getvalue().splitlines()]
    assert done == ["25/100", "50/100", "75/100", "100/100"]


def test_progress_for_output_picks_the_renderer():
    from popcount_learn.progress import LineProgress, progress_for_output

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(progress_for_output(False, io.StringIO()), NullProgress)
    assert isinstance(progress_for_output(True, io.StringIO()), LineProgress)
    assert isinstance(progress_for_output(True, Tty()), TqdmProgress)
