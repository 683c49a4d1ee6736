"""supervisor.containers.cgroup_filter: options → the cgroup ids the kernel filter holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.containers.cgroup_filter import CgroupFilter, ContainerRef
from workers.args import FILTER_EXCLUDE, FILTER_INCLUDE, ArgsError

WEB = ContainerRef(id="a" * 64, name="web", cgroup_id=101)
API = ContainerRef(id="b" * 64, name="k8s_app_api-0_prod_uid_0", cgroup_id=102, pod="api-0", namespace="prod",
                   k8s_container="app")
SIDECAR = ContainerRef(id="c" * 64, name="k8s_proxy_api-0_prod_uid_0", cgroup_id=103, pod="api-0",
                       namespace="prod", k8s_container="proxy")
OTHER_NS = ContainerRef(id="d" * 64, name="k8s_app_api-0_dev_uid_0", cgroup_id=104, pod="api-0", namespace="dev",
                        k8s_container="app")
STARTING = ContainerRef(id="e" * 64, name="web2", cgroup_id=None)  # its cgroup is not known yet
ALL = [WEB, API, SIDECAR, OTHER_NS, STARTING]


def _filter(**values: object) -> CgroupFilter:
    flt = CgroupFilter.from_values(values)
    assert flt is not None
    return flt


def test_no_selector_no_filter() -> None:
    assert CgroupFilter.from_values({"pid": 3, "container": "", "host": False}) is None


@pytest.mark.parametrize(("values", "ids"), [
    ({"container": "web"}, {101}),
    ({"container": "a" * 12}, {101}),  # an id prefix of docker's short length
    ({"container": "a" * 64}, {101}),
    ({"container": "aaaa"}, set()),  # too short to be an id prefix
    ({"container": "app"}, {102, 104}),  # the Kubernetes container name, in every pod that has one
    ({"pod": "api-0"}, {102, 103, 104}),
    ({"pod": "api-0", "namespace": "prod"}, {102, 103}),
    ({"namespace": "prod"}, {102, 103}),
    ({"container": "app", "pod": "api-0", "namespace": "prod"}, {102}),
    ({"container": "web2"}, set()),  # known, but no cgroup yet: nothing to put in the map
    ({"container": "nope"}, set()),
])
def test_include_selects_the_matching_containers(values: dict, ids: set[int]) -> None:
    flt = _filter(**values)
    assert flt.mode == FILTER_INCLUDE
    assert flt.resolve(ALL, None) == ids


def test_host_excludes_every_container_and_the_runtime_parents(tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    (tmp_path / "kubepods.slice").mkdir()
    (tmp_path / "system.slice").mkdir()
    flt = _filter(host=True)
    assert flt.mode == FILTER_EXCLUDE
    assert flt.resolve(ALL, tmp_path) == {101, 102, 103, 104, os.stat(tmp_path / "docker").st_ino,
                                          os.stat(tmp_path / "kubepods.slice").st_ino}
    assert flt.describe() == "host processes only"


def test_cgroup_path_is_its_directory_inode(tmp_path: Path) -> None:
    (tmp_path / "system.slice" / "nginx.service").mkdir(parents=True)
    flt = _filter(cgroup="/system.slice/nginx.service")
    assert flt.resolve(ALL, tmp_path) == {os.stat(tmp_path / "system.slice" / "nginx.service").st_ino}
    assert flt.describe() == "cgroup '/system.slice/nginx.service'"


@pytest.mark.parametrize("path", ["/missing", "/../etc"])
def test_a_cgroup_path_that_is_not_a_cgroup_is_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(ArgsError, match="--cgroup: no cgroup"):
        _filter(cgroup=path).resolve([], tmp_path)


def test_describe_names_every_selector() -> None:
    assert _filter(container="app", pod="api-0", namespace="prod").describe() == \
        "container 'app' and pod 'api-0' and namespace 'prod'"
