"""The quality report renders in a real browser: headless Chromium draws it and decodes its media.

Three short Chromium runs over one rendered report:

- a screenshot, which must be neither blank nor colourless (the plots' bars are
  the only saturated colour on the page);
- `--dump-dom` of a copy with a tiny probe script added (and the page's
  Content-Security-Policy relaxed for inline scripts only): after load it
  writes how many `<img>` decoded (`naturalWidth > 0`) and how many `<audio>`
  elements loaded their WAV's metadata;
- `--dump-dom` of a copy with the probe but the CSP untouched: the probe must
  not run, which proves the report's policy blocks any script that escaping
  might ever let through.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import polars as pl
import pytest
import soundfile as sf

from quality.report.html import render_report
from quality.report.rows import Clip, select_clips

CHROMIUM = Path("/usr/bin/chromium")
# One Chromium run takes about a second here; the limit only stops a hung browser.
RUN_TIMEOUT_S = 45
VIEWPORT = (1280, 2400)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"headless Chromium not installed at {CHROMIUM}"
)

PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const players = [...document.querySelectorAll("audio")];
  const settled = players.map((a) => a.readyState >= 1 ? Promise.resolve() : new Promise((done) => {
    a.addEventListener("loadedmetadata", done, {once: true});
    a.addEventListener("error", done, {once: true});
  }));
  Promise.all(settled).then(() => {
    const out = document.createElement("pre");
    out.id = "probe";
    out.textContent = JSON.stringify({
      images: images.length,
      decoded_images: images.filter((i) => i.complete && i.naturalWidth > 0).length,
      audio: players.length,
      audio_with_metadata: players.filter((a) => a.readyState >= 1 && a.duration > 0).length,
    });
    document.body.appendChild(out);
  });
});
</script>"""
PROBE_RESULT = re.compile(r'<pre id="probe">([^<]*)</pre>')


def _tone_wav(seconds: float, frequency_hz: float) -> bytes:
    """A 16 kHz 16-bit mono WAV holding a sine tone."""
    t = np.arange(int(16_000 * seconds)) / 16_000
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * frequency_hz * t), 16_000, format="WAV",
             subtype="PCM_16")  # fmt: skip
    return buffer.getvalue()


def _rows() -> pl.DataFrame:
    """Two sources: `a` measured in full (4 plots), `b` without clipping data (3 plots).

    12 utterances; every third is a policy rejection (`min_snr_db`, 4.0–4.9 vs 5.0).
    """
    n = 12
    rng = np.random.default_rng(7)
    rejected = [i % 3 == 0 for i in range(n)]

    def only_rejected(value: object) -> list[object]:
        return [value if r else None for r in rejected]

    return pl.DataFrame(
        {
            "utterance_id": [f"{'ab'[i % 2]}/u{i:02d}" for i in range(n)],
            "source": ["ab"[i % 2] for i in range(n)],
            "language": ["en" if i % 2 == 0 else "zh" for i in range(n)],
            "status": ["rejected" if r else "accepted" for r in rejected],
            "reject_stage": only_rejected("policy"),
            "reject_rule": only_rejected("min_snr_db"),
            "reject_value": [4.0 + 0.1 * i if r else None for i, r in enumerate(rejected)],
            "reject_threshold": only_rejected(5.0),
            "reject_message": only_rejected("too noisy"),
            "policy_version": ["0123456789ab"] * n,
            "wada_snr_db": rng.uniform(3, 35, n),
            "duration_s": rng.uniform(1, 12, n),
            "clipping_ratio": [
                float(x) if i % 2 == 0 else None for i, x in enumerate(rng.uniform(0, 1e-3, n))
            ],
            "bandwidth_hz": rng.uniform(3000, 8000, n),
            "text": [f"utterance {i} <b>not bold</b> 你好" for i in range(n)],
        }
    )


EXPECTED_PLOTS = 7


def _chromium(workdir: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a fresh profile under `workdir`; kill its group on timeout."""
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--mute-audio",
        "--hide-scrollbars",
        f"--user-data-dir={workdir / f'profile-{name}'}",
        *args,
    ]
    # HOME inside the test folder: Chromium writes caches and crash folders there too.
    env = {**os.environ, "HOME": str(workdir)}
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"Chromium ({name}) did not finish within {RUN_TIMEOUT_S} s")
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert result.returncode == 0, f"Chromium ({name}) failed:\n{stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    """The report written to a temporary folder, its HTML, and its number of clips."""
    rows = _rows()
    chosen = select_clips(rows)
    clips = [
        Clip(utterance_id, section, _tone_wav(1.0, 220.0 + 40 * k), duration_s=1.0)  # type: ignore[arg-type]
        for section, ids in chosen.items()
        for k, utterance_id in enumerate(ids)
    ]
    html = render_report(rows, clips, "voxlake quality report (browser test)", "voxlake tests")
    workdir = tmp_path_factory.mktemp("report-browser")
    path = workdir / "quality.html"
    path.write_text(html, encoding="utf-8")
    return workdir, html, len(clips)


def test_screenshot_is_not_blank(rendered: tuple[Path, str, int]) -> None:
    workdir, _, _ = rendered
    shot = workdir / "screenshot.png"
    _chromium(
        workdir,
        "screenshot",
        f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
        f"--screenshot={shot}",
        (workdir / "quality.html").as_uri(),
    )
    image = matplotlib.image.imread(shot)[..., :3]  # RGB floats in [0, 1]
    assert image.shape[:2] == (VIEWPORT[1], VIEWPORT[0])
    # Text, tables and plots: well over 1 % of the page is not white.
    non_white = float((image.min(axis=2) < 0.9).mean())
    assert non_white > 0.01, f"screenshot looks blank ({non_white:.2%} non-white pixels)"
    # The page itself is grey on white; saturated pixels come from the plots' bars.
    saturated = int(((image.max(axis=2) - image.min(axis=2)) > 0.25).sum())
    assert saturated > 5_000, f"no plot colour on screen ({saturated} saturated pixels)"


def test_images_decode_and_audio_loads(rendered: tuple[Path, str, int]) -> None:
    workdir, html, n_clips = rendered
    relaxed = html.replace("script-src 'none'", "script-src 'unsafe-inline'")
    assert relaxed != html, "the report's CSP no longer says script-src 'none'"
    probe_page = workdir / "probe.html"
    probe_page.write_text(relaxed.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = _chromium(
        workdir, "probe", "--virtual-time-budget=10000", "--dump-dom", probe_page.as_uri()
    )
    found = PROBE_RESULT.search(result.stdout)
    assert found is not None, "the probe script did not report (page not loaded?)"
    counts = json.loads(found.group(1))
    assert counts == {
        "images": EXPECTED_PLOTS,
        "decoded_images": EXPECTED_PLOTS,
        "audio": n_clips,
        "audio_with_metadata": n_clips,
    }
    assert n_clips == 8 + 4  # 8 accepted with SNR, 4 policy rejections with margins


def test_report_policy_blocks_scripts(rendered: tuple[Path, str, int]) -> None:
    workdir, html, _ = rendered
    page = workdir / "strict.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = _chromium(workdir, "strict", "--virtual-time-budget=3000", "--dump-dom", page.as_uri())
    assert "<main>" in result.stdout, "the page did not load"
    assert PROBE_RESULT.search(result.stdout) is None, "an inline script ran despite the CSP"
