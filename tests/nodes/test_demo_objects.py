"""The demo's per-class object scores: face sprites count as people, each truth is found once."""

from __future__ import annotations

from sensorfuse.nodes import demo_objects


def test_person_detections_are_scored_against_face_sprites() -> None:
    boxes = {100: [{"subject": "face0", "kind": "face", "sprite": "cameraman", "box": [10, 20, 40, 60]},
                   {"subject": "cat", "kind": "cat", "sprite": "chelsea", "box": [200, 150, 260, 210]},
                   {"subject": "rocket", "kind": "object", "sprite": "rocket", "box": [0, 0, 30, 100]}]}
    results = [{"frame_t_ns": 100, "objects": [
        {"class": "person", "track_id": 1, "box": [0, 10, 70, 200], "score": 0.6},  # head and shoulders of face0
        {"class": "person", "track_id": 2, "box": [5, 15, 45, 65], "score": 0.4},  # the same person twice: wrong
        {"class": "car", "track_id": 3, "box": [200, 150, 260, 210], "score": 0.5},  # no car there
    ]}, {"frame_t_ns": 999, "objects": []}]  # a frame without truth boxes
    scores = demo_objects.score_objects(results, boxes, ["person", "cat", "car"])
    person, cat, car = scores["person"], scores["cat"], scores["car"]
    assert (person.detections, person.correct, person.truths, person.found) == (2, 1, 1, 1)
    assert (person.precision, person.recall) == (0.5, 1.0)
    assert (cat.detections, cat.truths, cat.recall) == (0, 1, 0.0)
    assert (car.detections, car.correct, car.truths) == (1, 0, 0)
    table = demo_objects.table(scores)
    assert table.splitlines()[1].split() == ["person", "2", "1", "1", "1", "0.50", "1.00"]
