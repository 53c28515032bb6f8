"""Release versions and the previous release."""

import pytest
from shipbook import versions
from shipbook.errors import InputError


@pytest.mark.parametrize("bad", ["1.0.0", "v1.0", "v1.0.0.0", "v01.0.0", "v1.0.0; rm -rf /", "", "v1.0.0-", "V1.0.0"])
def test_bad_versions_are_input_errors_naming_the_field(bad):
    with pytest.raises(InputError) as err:
        versions.parse(bad)
    assert str(err.value).startswith("VERSION: ")


def test_good_versions_parse():
    assert str(versions.parse("v1.2.3")) == "1.2.3"
    assert versions.parse("v1.0.0-rc.1").prerelease == "rc.1"


def test_previous_release_skips_prereleases_rollbacks_and_later_tags():
    tags = ["v0.8.0", "v0.9.0", "v0.9.1-rc.1", "v0.9.1-rollback", "v1.1.0", "not-a-tag", "v1.0.0-rc.2"]
    assert versions.previous_release(tags, "v1.0.0") == "v0.9.0"
    assert versions.previous_release(tags, "v0.8.0") == ""
    assert versions.previous_release(tags, "v2.0.0") == "v1.1.0"
