"""Two views of one annotation.

- :class:`AnnotationForm` is the form annotators fill in (the annotation JSON schema): capitalised
  enums such as ``"Center"`` or ``"Not present"``.
- :class:`SceneAnnotation` is the normalised view used for training and evaluation: lower-case
  positions (``left/center/right/front/unknown``), the road-vs-sidewalk relation derived by the
  rule (docs/targets.md), near / far objects as position lists (one entry per object, so the
  count is the list's length) and, for a clip, how the close objects move.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from roadscene.schema.values import (
    FORM_CLASSES,
    MOVING_CLASSES,
    OBJECT_CLASSES,
    POSITIONS,
    motion_label,
    normalize_position,
    parse_object_cell,
    road_vs_sidewalk,
)

_MIRRORED = {"left": "right", "right": "left"}
Motion = Literal["standing still", "approaching", "moving away", "crossing"]
_POSITION_ORDER = list(POSITIONS)


class SceneAnnotation(BaseModel):
    """Normalised annotation of one image: what training targets and strict metrics use."""

    model_config = ConfigDict(frozen=False)

    image: str = Field(description="Image file name (base name) or path.")
    sidewalk: Literal["left", "center", "right", "front", "unknown"] = Field(
        description="Where the sidewalk is in the image."
    )
    road: Literal["left", "center", "right", "front", "unknown"] = Field(
        description="Where the road is in the image; `front` = a road crossing ahead."
    )
    relation: Literal["left_of", "right_of", "crossing_front", "unknown"] = Field(
        description="Road relative to the sidewalk, derived from sidewalk and road."
    )
    near: dict[str, list[Literal["left", "center", "right"]]] = Field(
        default_factory=dict,
        description="Objects on the sidewalk: class -> one position per object.",
    )
    far: dict[str, list[Literal["left", "center", "right"]]] = Field(
        default_factory=dict,
        description="Objects off the sidewalk: class -> one position per object.",
    )
    motion: dict[str, Motion] | None = Field(
        default=None,
        description="How the close objects of a clip move: class -> motion (a class not named "
        "stands still); None for a still image, which says nothing about motion.",
    )

    @classmethod
    def build(
        cls,
        image: str,
        sidewalk: str,
        road: str,
        near: dict[str, list[str]] | None = None,
        far: dict[str, list[str]] | None = None,
        motion: dict[str, str] | None = None,
    ) -> SceneAnnotation:
        """A scene from (possibly raw) positions; the relation is derived by the rule. `motion`
        (clips only) keeps the classes that are close and can move (`MOVING_CLASSES`)."""
        sw, rd = normalize_position(sidewalk), normalize_position(road)
        near_objects = {c: list((near or {}).get(c, [])) for c in OBJECT_CLASSES}
        return cls(
            image=image,
            sidewalk=sw,
            road=rd,
            relation=road_vs_sidewalk(sw, rd),
            near=near_objects,
            far={c: list((far or {}).get(c, [])) for c in OBJECT_CLASSES},
            motion=None
            if motion is None
            else {c: m for c, m in motion.items() if c in MOVING_CLASSES and near_objects.get(c)},
        )

    def moving(self, cls: str) -> str:
        """What a close class does in a clip, as scored (`motion_label`): its motion, or
        `static` (standing still, or no motion given)."""
        return motion_label((self.motion or {}).get(cls))

    def mirrored(self) -> SceneAnnotation:
        """The scene seen in a horizontally flipped image: left and right swapped in the
        sidewalk, the road and every object position (listed left < center < right again); the
        relation is derived anew, so `left_of` and `right_of` swap too. Motions keep their words:
        approaching, moving away and crossing read the same in a mirror."""

        def flip(position: str) -> str:
            return _MIRRORED.get(position, position)

        def objects(side: dict[str, list[str]]) -> dict[str, list[str]]:
            return {
                cls: sorted((flip(p) for p in positions), key=_POSITION_ORDER.index)
                for cls, positions in side.items()
            }

        return SceneAnnotation.build(
            image=self.image,
            sidewalk=flip(self.sidewalk),
            road=flip(self.road),
            near=objects(self.near),
            far=objects(self.far),
            motion=dict(self.motion) if self.motion is not None else None,
        )

    def near_count(self, cls: str) -> int:
        return len(self.near.get(cls, []))

    def far_count(self, cls: str) -> int:
        return len(self.far.get(cls, []))

    def to_form(self) -> AnnotationForm:
        """The annotation form for this scene (lossy where the form is: single-valued classes
        keep their first position; sidewalk `unknown` -> `Outside`, road `unknown` -> `Not
        present`)."""
        sidewalk = {"unknown": "Outside", "front": "Outside"}.get(
            self.sidewalk, self.sidewalk.capitalize()
        )
        road = {"unknown": "Not present", "center": "Front"}.get(self.road, self.road.capitalize())

        def objects(side: dict[str, list[str]], obstacle_list: bool) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for cls in FORM_CLASSES:
                positions = [p.capitalize() for p in side.get(cls, [])]
                if cls == "obstacle" and obstacle_list:
                    out[cls] = positions or ["not present"]
                else:
                    out[cls] = positions[0] if positions else "not present"
            return out

        has_near = any(self.near.get(c) for c in OBJECT_CLASSES)
        has_far = any(self.far.get(c) for c in OBJECT_CLASSES)
        return AnnotationForm.model_validate(
            {
                "image": self.image,
                "sidewalk_pos": sidewalk,
                "road_pos": road,
                "object_present": "Yes" if has_near else "No",
                "objects_on_sidewalk": objects(self.near, obstacle_list=True),
                "object_present_outside": "Yes" if has_far else "No",
                "objects_outside_sidewalk": objects(self.far, obstacle_list=False),
            }
        )


# --- the annotation form (docs/data.md) ---------------------------------------------------------

FormPosition = Literal["not present", "Left", "Center", "Right"]


class ObjectsOnSidewalk(BaseModel):
    """Objects on the sidewalk; `obstacle` may list several positions."""

    model_config = ConfigDict(extra="forbid")

    bicycle: FormPosition | None = None
    car: FormPosition | None = None
    person: FormPosition | None = None
    traffic_sign: FormPosition | None = None
    traffic_light: FormPosition | None = None
    obstacle: list[FormPosition] | None = None
    grass: FormPosition | None = None
    plants: FormPosition | None = None
    trees: FormPosition | None = None


class ObjectsOutsideSidewalk(BaseModel):
    """Objects off the sidewalk."""

    model_config = ConfigDict(extra="forbid")

    bicycle: FormPosition | None = None
    car: FormPosition | None = None
    person: FormPosition | None = None
    traffic_sign: FormPosition | None = None
    traffic_light: FormPosition | None = None
    obstacle: FormPosition | None = None
    grass: FormPosition | None = None
    plants: FormPosition | None = None
    trees: FormPosition | None = None


class AnnotationForm(BaseModel):
    """Sidewalk scene annotation, as filled in by an annotator (docs/data.md)."""

    model_config = ConfigDict(extra="forbid", title="Sidewalk scene annotation")

    image: str
    sidewalk_pos: Literal["Left", "Center", "Right", "Outside"]
    road_pos: Literal["Not present", "Left", "Front", "Right"]
    object_present: Literal["No", "Yes"]
    objects_on_sidewalk: ObjectsOnSidewalk | None = None
    object_present_outside: Literal["No", "Yes"]
    objects_outside_sidewalk: ObjectsOutsideSidewalk | None = None

    def to_scene(self) -> SceneAnnotation:
        """The normalised view of this form."""

        def positions(value: Any) -> list[str]:
            values = value if isinstance(value, list) else [value]
            return [p for v in values if v is not None for p in parse_object_cell(v)]

        near = self.objects_on_sidewalk or ObjectsOnSidewalk()
        far = self.objects_outside_sidewalk or ObjectsOutsideSidewalk()
        return SceneAnnotation.build(
            image=self.image,
            sidewalk=self.sidewalk_pos,
            road=self.road_pos,
            near={c: positions(getattr(near, c)) for c in OBJECT_CLASSES},
            far={c: positions(getattr(far, c)) for c in OBJECT_CLASSES},
        )


def form_json_schema() -> dict[str, Any]:
    """JSON Schema of the annotation form (what `roadscene data schema` prints)."""
    schema = AnnotationForm.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
