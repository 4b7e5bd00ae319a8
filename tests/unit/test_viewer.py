"""The viewer's rules: how a series is shown, and which renderings a share may forward."""

from __future__ import annotations

from typing import Any

import pytest

from orthanc_nas.images.viewer import (
    BadRendering,
    SeriesMissing,
    describe,
    first_number,
    rendering_uri,
    series_stack,
    thumbnail_uri,
)
from orthanc_nas.orthanc_api import OrthancError

A, B, C = ((x * 8 + "-") * 4 + x * 8 for x in "abc")


class FakeOrthanc:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def get(self, uri: str) -> Any:
        if uri not in self.answers:
            raise OrthancError(uri)
        return self.answers[uri]


def _instance(iid: str, number: str | None, frames: str | None = None) -> dict[str, Any]:
    tags = {"InstanceNumber": number} if number is not None else {}
    if frames:
        tags["NumberOfFrames"] = frames
    return {"ID": iid, "MainDicomTags": tags}


def _series(instances: list[dict[str, Any]], tags: dict[str, Any]) -> FakeOrthanc:
    return FakeOrthanc({"/series/S": {"ParentStudy": "T", "MainDicomTags": {"SeriesNumber": "2"}},
                        "/series/S/instances": instances,
                        f"/instances/{instances[0]['ID'] if instances else ''}/tags?simplify": tags,
                        **{f"/instances/{i['ID']}/tags?simplify": tags for i in instances}})


def test_decimal_strings_give_their_first_value_and_nonsense_gives_none() -> None:
    assert first_number("40\\400") == 40.0
    assert first_number(" -600 ") == -600.0
    assert first_number("") is None and first_number(None) is None
    assert first_number("nan") is None and first_number("abc") is None


def test_a_ct_is_windowed_from_its_tags_in_rescaled_units() -> None:
    d = describe({"Modality": "CT", "PhotometricInterpretation": "MONOCHROME2",
                  "WindowCenter": "40\\-600", "WindowWidth": "400\\1500", "BitsStored": "12",
                  "PixelRepresentation": "0", "RescaleSlope": "1", "RescaleIntercept": "-1024"})
    assert d["window"] == [40.0, 400.0] and not d["colour"]
    assert d["range"] == [-1024.0, 4095 - 1024.0]


def test_colour_has_no_window_and_a_missing_window_falls_back_to_the_range() -> None:
    assert describe({"PhotometricInterpretation": "YBR_FULL_422"})["window"] is None
    assert describe({"PhotometricInterpretation": "RGB", "WindowCenter": "1",
                     "WindowWidth": "2"})["colour"] is True
    mono1 = describe({"PhotometricInterpretation": "MONOCHROME1", "BitsStored": "16",
                      "PixelRepresentation": "1", "WindowWidth": "0", "WindowCenter": "5"})
    assert mono1["window"] is None and mono1["range"] == [-32768.0, 32767.0]
    assert describe({"SmallestImagePixelValue": "10", "LargestImagePixelValue": "900"})[
        "range"] == [10.0, 900.0]


def test_a_series_lists_every_frame_in_instance_number_order() -> None:
    orthanc = _series([_instance(B, "2"), _instance(A, "10", frames="3"), _instance(C, None)],
                      {"Modality": "US", "PhotometricInterpretation": "RGB"})
    stack = series_stack(orthanc, "S")
    assert stack["frames"] == [[B, 0], [A, 0], [A, 1], [A, 2], [C, 0]]
    assert stack["colour"] and stack["study_id"] == "T" and stack["instances"] == 3


def test_a_share_sees_only_its_instances_and_an_empty_choice_is_missing() -> None:
    orthanc = _series([_instance(A, "1"), _instance(B, "2")], {})
    assert series_stack(orthanc, "S", {B})["frames"] == [[B, 0]]
    with pytest.raises(SeriesMissing):
        series_stack(orthanc, "S", {C})
    with pytest.raises(SeriesMissing):
        series_stack(FakeOrthanc({}), "S")


def test_renderings_forward_only_a_numeric_window() -> None:
    assert rendering_uri(A, "3", "rendered", {}) == f"/instances/{A}/frames/3/rendered"
    windowed = rendering_uri(A, "0", "rendered", {"window-center": "-600",
                                                  "window-width": "1500.5"})
    assert windowed == f"/instances/{A}/frames/0/rendered?window-center=-600&window-width=1500.5"
    assert rendering_uri(A, "0", "preview", {}) == f"/instances/{A}/frames/0/preview"
    bad: list[tuple[str, str, dict[str, str]]] = [
        ("0", "file", {}), ("x", "rendered", {}), ("0", "preview", {"window-center": "1"}),
        ("0", "rendered", {"window-center": "1"}),
        ("0", "rendered", {"window-center": "1", "window-width": "0"}),
        ("0", "rendered", {"window-center": "1&x=2", "window-width": "3"}),
        ("0", "rendered", {"width": "10"}), ("99999", "rendered", {})]
    for frame, kind, query in bad:
        with pytest.raises(BadRendering):
            rendering_uri(A, frame, kind, query)


def test_a_thumbnail_is_scaled_by_orthanc_when_it_can_window_it() -> None:
    tags = {"WindowCenter": "40", "WindowWidth": "400"}
    orthanc = _series([_instance(A, "1"), _instance(B, "2"), _instance(C, "3")], tags)
    orthanc.answers["/studies/T/series"] = [
        {"ID": "S", "Instances": [A, B, C], "MainDicomTags": {"SeriesNumber": "1"}},
        {"ID": "E", "Instances": [], "MainDicomTags": {"SeriesNumber": "0"}}]
    assert thumbnail_uri(orthanc, "T").startswith(f"/instances/{B}/frames/0/rendered?width=")
    orthanc.answers[f"/instances/{A}/tags?simplify"] = {}
    assert thumbnail_uri(orthanc, "T") == f"/instances/{B}/frames/0/preview"
    with pytest.raises(SeriesMissing):
        thumbnail_uri(FakeOrthanc({"/studies/T/series": []}), "T")
