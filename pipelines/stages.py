"""Ray-agnostic stages of the video pipeline.

Each stage is a plain class: ``__init__`` builds its models once, ``__call__(item) -> result``
is pure (no shared state, no I/O besides reading its chunk of the input clip). The same
classes run in-process (``LocalExecutor``) and as Ray actors (``RayExecutor``).

Work items are small dicts: the clip path, a frame range ``[start, stop)`` and, for the model
passes, the per-face jobs of those frames (matrices, codes). Each stage decodes its own chunk
with ``VideoReader.read_range`` so decoding runs in parallel with compute.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _read(item: dict):
    from vidinv.io.video import VideoReader

    return VideoReader(item["path"]).read_range(item["start"], item["stop"])


def _to_tensor(frames: np.ndarray, device, dtype) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float [N,3,H,W] in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2)
    return x.to(dtype) / 127.5 - 1.0


def faces_to_arrays(faces_per_frame: list) -> list[list[dict]]:
    """Detections as plain dicts of numpy arrays (what crosses the object store and the cache)."""
    return [
        [dict(bbox=np.asarray(f.bbox, np.float32), score=float(f.score), landmarks=np.asarray(f.landmarks, np.float32))
         for f in faces]
        for faces in faces_per_frame
    ]


class AnalyzeStage:
    """Pass 1: detect faces + 68 landmarks and a colour histogram per frame (for cut detection)."""

    def __init__(self, detector: str, detect_max_side: int, upsample: int,
                 min_face: int | None = None, device: str = "cpu") -> None:
        """Settings come from the config's ``faces`` section (detector, detect_max_side, detect_upsample,
        min_face). dlib's HOG detection image is sized from the frame (see
        :func:`vidinv.faces.detect.dlib_scale`): ``max_side`` bounds its cost, ``min_face`` (frame pixels)
        keeps faces of that size findable (upsampling when needed). ``device`` is the models' (``auto``
        resolved in the worker): the neural detectors run there."""
        from vidinv.device import pick_device
        from vidinv.faces.detect import get_detector

        self.min_face = float(min_face) if min_face else None
        self.detector = get_detector(detector, device=str(pick_device(device)), max_side=int(detect_max_side) or None,
                                     upsample=int(upsample), min_face=self.min_face)

    def __call__(self, item: dict) -> dict:
        from vidinv.faces.track import frame_histogram

        chunk = _read(item)
        frames = chunk.frames
        if self.min_face and hasattr(self.detector, "min_face"):
            # a face is at most the frame's short side: on small frames (a 192 px clip) the smallest face
            # wanted is a third of it, so that a small frame's faces are not missed
            self.detector.min_face = min(self.min_face, min(frames.shape[1:3]) / 3.0)
        out = faces_to_arrays(self.detector.detect(frames))
        hists = np.stack([frame_histogram(f) for f in frames])
        return {"start": item["start"], "faces": out, "hists": hists, "pts": np.asarray(chunk.pts)}


class RefineStage:
    """Optional pass between tracking and alignment (CPU): Lucas-Kanade refinement of the target landmarks
    over a chunk's frames, as the official video pipeline does (the flow chain restarts at each chunk)."""

    def __init__(self, official: bool = True) -> None:
        from stabilizers import FlowLandmarkRefiner

        self.refiner = FlowLandmarkRefiner.official() if official else FlowLandmarkRefiner()

    def __call__(self, item: dict) -> dict:
        chunk = _read(item)
        out = []
        for lm, valid in zip(item["landmarks"], item["valid"]):  # per target: [t,68,2], [t]
            out.append(np.asarray(self.refiner(chunk.frames, lm, segments=item.get("segments"), valid=valid),
                                  np.float32) if valid.any() else lm)
        return {"start": item["start"], "landmarks": out}


def _stack_codes(codes: list[dict], device, dtype) -> dict:
    """Per-face code dicts of numpy arrays -> one batched dict of tensors."""
    return {k: torch.as_tensor(np.stack([c[k] for c in codes]), device=device, dtype=dtype) for k in codes[0]}


class InvertStage:
    """Pass 2 (GPU): align the target faces of a chunk (one batched warp) and invert them to a code."""

    def __init__(self, spec: dict) -> None:
        from pipelines.components import build_models

        self.m = build_models(spec)
        self.batch = int(spec["batch_size"])

    @torch.no_grad()
    def __call__(self, item: dict) -> dict:
        from vidinv.faces.align import align_faces

        jobs = item["jobs"]  # list of (frame_index, key, M [3,3])
        m = self.m
        if not jobs:
            return {"keys": [], "code": {}}
        chunk = _read(item)
        parts: dict[str, list] = {}
        for b in range(0, len(jobs), self.batch):
            part = jobs[b : b + self.batch]
            frames = _to_tensor(chunk.frames[[j[0] - item["start"] for j in part]], m.device, m.dtype)
            M = torch.as_tensor(np.stack([j[2] for j in part]), dtype=m.dtype, device=m.device)
            code = m.inverter.invert(align_faces(frames, M, m.size))
            for k, v in code.items():
                parts.setdefault(k, []).append(v.float().cpu())
        return {"keys": [j[1] for j in jobs], "code": {k: torch.cat(v).numpy() for k, v in parts.items()}}


class RenderStage:
    """Pass 3 (GPU): render the edited faces, unalign, mask and blend them into the frames."""

    def __init__(self, spec: dict, blend: dict, tuning: dict | None = None) -> None:
        """``blend``: the config's ``blend`` section as a dict (method, feather, dilate) plus ``parser``, the
        BiSeNet checkpoint or None; ``tuning``: tuned weights and stitching
        (:func:`pipelines.tuning.render_tuning`)."""
        from pipelines.components import build_models

        self.m = build_models(spec)
        self.tuning = None
        if tuning is not None:
            from pipelines.tuning import RenderTuning

            self.tuning = RenderTuning(tuning)
        self.batch = int(spec["batch_size"])
        self.blend = dict(blend)
        self.parser = None
        if self.blend.get("parser"):
            from vidinv.models.bisenet import load_bisenet

            self.parser = load_bisenet(self.blend["parser"]).to(self.m.device)

    @torch.no_grad()
    def masks(self, images: torch.Tensor, lm_crop: np.ndarray, mask_size: int = 256) -> torch.Tensor:
        """Blend masks in crop space [N,1,S,S]: BiSeNet's face classes when its weights are present, else the
        landmark hull; dilated/feathered by the configured fractions of the crop size.

        The mask is smooth, so it is made at ``mask_size`` (a feathered 1024 mask costs ~0.15 s a face on a
        CPU, mostly the blur) and resized to the crop.
        """
        import torch.nn.functional as Fnn

        from vidinv.faces.mask import feather, landmark_hull_mask, parsing_mask

        size = images.shape[-1]
        ms = min(size, mask_size)
        if self.parser is None:
            lm = torch.as_tensor(lm_crop, dtype=torch.float32) * (ms / size)
            m = landmark_hull_mask(lm, ms, dilate=self.blend["dilate"], feather=self.blend["feather"])
        else:
            from vidinv.models.bisenet import parse_faces

            labels = torch.cat([parse_faces(self.parser, images[b : b + self.batch].to(self.m.device) * 2 - 1).cpu()
                                for b in range(0, len(images), self.batch)])
            m = parsing_mask(labels)
            if m.shape[-1] != ms:
                m = Fnn.interpolate(m, size=(ms, ms), mode="bilinear", align_corners=False)
            m = feather(m, self.blend["feather"] * ms)
        if ms != size:
            m = Fnn.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
        return m.clamp(0, 1)

    @torch.no_grad()
    def render(self, codes: list[dict], w_edit: list | None, jobs: list[dict] | None = None) -> torch.Tensor:
        """Per-face codes (+ edited w) -> images [N,3,S,S] in [-1,1] (the inversion when ``w_edit`` is None);
        with tuned weights, each face with its ``jobs`` entry's (target, frame) weights."""
        m = self.m
        out = []
        for b in range(0, len(codes), self.batch):
            code = _stack_codes(codes[b : b + self.batch], m.device, m.dtype)
            web = None if w_edit is None else torch.as_tensor(np.stack(w_edit[b : b + self.batch]), device=m.device, dtype=m.dtype)
            if self.tuning is None:
                out.append(m.inverter.render(code, web, m.noise).float().cpu())
            else:
                out.append(self.tuning.render(m, code, web, jobs[b : b + self.batch]).float().cpu())
        return torch.cat(out)

    def faces(self, frames: np.ndarray, start: int, jobs: list[dict], w_edit: list | None) -> torch.Tensor:
        """The chunk's faces [N,3,S,S] in [-1,1]: plain renders, or tuned (and stitched) ones."""
        if self.tuning is None:
            return self.render([j["code"] for j in jobs], w_edit)
        return self.tuning.faces(self, frames, start, jobs, w_edit)

    @torch.no_grad()
    def __call__(self, item: dict) -> dict:
        chunk = _read(item)
        frames = chunk.frames.copy()
        jobs = item["jobs"]  # list of dicts: frame, M, lm_crop, code, w_edit
        out: dict[str, Any] = {"start": item["start"], "pts": np.asarray(chunk.pts), "frames": frames}
        if not jobs:
            return out
        w_edit = [j["w_edit"] for j in jobs] if jobs[0].get("w_edit") is not None else None
        images = (self.faces(chunk.frames, item["start"], jobs, w_edit).clamp(-1, 1) + 1) / 2  # [N,3,S,S], [0,1]
        masks = self.masks(images, np.stack([j["lm_crop"] for j in jobs]))
        self.paste(frames, item["start"], jobs, images, masks)
        return out

    @torch.no_grad()
    def paste(self, frames: np.ndarray, start: int, jobs: list[dict], images: torch.Tensor,
              masks: torch.Tensor) -> None:
        """Unalign, mask and blend the rendered faces into their frames (in place), on each face's footprint
        only (:func:`vidinv.faces.paste.paste_faces`): the faces of one frame in one call."""
        from vidinv.faces.paste import paste_faces

        by_frame: dict[int, list[int]] = {}
        for idx, job in enumerate(jobs):
            by_frame.setdefault(job["frame"] - start, []).append(idx)
        for fi, idx in by_frame.items():
            M = torch.as_tensor(np.stack([jobs[i]["M"] for i in idx]), dtype=torch.float32)
            frames[fi] = paste_faces(frames[fi], images[idx], masks[idx], M, method=self.blend["method"])


class ReconstructStage(RenderStage):
    """For evaluation: the aligned source crops, their inversion and (optionally) their edit, as uint8 crops."""

    def __init__(self, spec: dict, out_size: int, tuning: dict | None = None) -> None:
        super().__init__(spec, blend={}, tuning=tuning)
        self.out_size = int(out_size)

    def _u8(self, x: torch.Tensor) -> np.ndarray:
        """[N,3,S,S] in [-1,1] -> uint8 [N,s,s,3] at the metric size."""
        import torch.nn.functional as Fnn

        if x.shape[-1] != self.out_size:
            x = Fnn.interpolate(x, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False, antialias=True)
        return ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    @torch.no_grad()
    def __call__(self, item: dict) -> dict:
        from vidinv.faces.align import align_faces

        jobs = item["jobs"]
        if not jobs:
            return {"frames": [], "targets": [], "source": None, "inversion": None, "edit": None}
        m = self.m
        chunk = _read(item)
        frames = _to_tensor(chunk.frames[[j["frame"] - item["start"] for j in jobs]], m.device, m.dtype)
        M = torch.as_tensor(np.stack([j["M"] for j in jobs]), dtype=m.dtype, device=m.device)
        source = self._u8(align_faces(frames, M, m.size).float())
        inversion = self._u8(self.faces(chunk.frames, item["start"], jobs, None))
        regions = self.tuning.last_regions if self.tuning is not None else None
        edit = None
        if jobs[0].get("w_edit") is not None:
            edit = self._u8(self.faces(chunk.frames, item["start"], jobs, [j["w_edit"] for j in jobs]))
        out = {"frames": [j["frame"] for j in jobs], "targets": [int(j.get("target", 0)) for j in jobs],
               "source": source, "inversion": inversion, "edit": edit}
        if regions is not None:  # the stitching regions (evaluation of stitching), as bool [N, s, s]
            out["content"], out["border"] = (self._u8(r.expand(-1, 3, -1, -1) * 2 - 1)[..., 0] > 127
                                             for r in regions)
        return out
