"""The primitives family's seeded bugs: what its properties must catch, each for the right reason
(``tests/selftest/test_extensions.py``). Metadata only: a bug's code is its module, imported by workers alone."""

from tpconform.impls.seeded import SeededBug

BUGS: tuple[SeededBug, ...] = (
    SeededBug("bug-gather-assumes-contiguous", "tpconform.families.primitives.bugs.gather_assumes_contiguous",
              "gather-from primitive reads a strided/transposed input's storage as if contiguous",
              "primitive_forward_matches_its_dense_meaning", "primitives/gather_from", cause="not contiguous"),
    SeededBug("bug-gather-grad-buffer-keeps-layout",
              "tpconform.families.primitives.bugs.gather_grad_buffer_keeps_layout",
              "gather-from primitive's backward fills an empty_like buffer of a transposed grad in row-major order",
              "primitive_backward_matches_its_dense_meaning", "primitives/gather_from", cause="wrong places"),
    SeededBug("bug-scatter-backward-local", "tpconform.families.primitives.bugs.scatter_backward_local",
              "scatter-to primitive's backward keeps only this rank's grad slice (no all-gather)",
              "primitive_backward_matches_its_dense_meaning", "primitives/scatter_to", cause="all-gather the grad slices"),
    SeededBug("bug-copy-to-grad-not-reduced", "tpconform.families.primitives.bugs.copy_to_grad_not_reduced",
              "copy-to and reduce-from only (declared): copy-to's backward does not all-reduce",
              "primitive_backward_matches_its_dense_meaning", "primitives/copy_to", cause="copy-to's backward"),
    SeededBug("bug-reduce-from-in-place", "tpconform.families.primitives.bugs.reduce_from_in_place",
              "reduce-from primitive all-reduces its input tensor in place",
              "primitive_leaves_its_inputs_untouched", "primitives/reduce_from", cause="in place"),
    SeededBug("bug-reduce-from-marks-dirty", "tpconform.families.primitives.bugs.reduce_from_marks_dirty",
              "reduce-from primitive all-reduces its input in place and marks it dirty (raises on a leaf)",
              "primitive_leaves_its_inputs_untouched", "primitives/reduce_from", cause="in place"),
)
