"""tools/_side_by_side.py: the child's arguments lose --trees and --rounds, nothing else."""

from _side_by_side import strip_tree_args


def test_tree_arguments_are_stripped_and_the_rest_kept_in_order():
    argv = ["net.h5", "--threads", "1", "2", "--trees", "/a", "/b", "--rounds", "3", "--repeat", "10"]
    assert strip_tree_args(argv) == ["net.h5", "--threads", "1", "2", "--repeat", "10"]
    assert strip_tree_args(["--trees", "/a", "/b"]) == []
    assert strip_tree_args(["--limit", "5"]) == ["--limit", "5"]
