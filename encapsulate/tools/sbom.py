"""``debchunk sbom``: the SBOM of an image, made from the image or read
from where it was attached.

In: an IMGREF (any transport ``oci.read.open_image`` reads).  Out: the bytes
of an SPDX 2.3 JSON document.  ``image_sbom`` applies the image's layers into
its tree (``mapping.layers``: each blob checked against its digest and its
diff_id, read as Go's archive/tar reads it, nothing extracted), reads the
dpkg database and os-release through that tree and dates the document with
the image's ``created``: of an image debchunk wrote with ``--sbom``, the same
bytes the build wrote.  ``attached_sbom`` fetches the SBOM attached to the
image in its registry (``oci.referrers``), checking every digest on the way.
"""

from __future__ import annotations

import shutil
import tempfile

from mapping import read_tree

from ..describe import config_created
from ..errors import EncapsulateError
from ..oci.imgref import ImageRef, RegistryOptions
from ..oci.platform import Platform
from ..oci.read import open_image
from ..oci.referrers import read_artifact, referrers
from ..rechunk import layers_origin
from ..sbom import SPDX_MEDIA_TYPE, tree_sbom


def image_sbom(
    ref: ImageRef, registry: RegistryOptions, platform: Platform, tmpdir: str | None = None
) -> bytes:
    """The SBOM of the packages installed in the image at ``ref`` (of an
    index, the ``platform`` image), dated with its config's ``created``;
    its layers are spooled under ``tmpdir`` (default TMPDIR) and removed."""
    try:
        work = tempfile.mkdtemp(prefix="debchunk-sbom-", dir=tmpdir)
    except OSError as e:
        raise EncapsulateError(
            f"cannot make a work directory: {e.strerror}",
            where=tmpdir or tempfile.gettempdir(),
            hint="give --tmpdir a writable directory",
        ) from None
    try:
        with open_image(ref, registry, platform=platform, tmpdir=work) as image:
            epoch = config_created(image.config)
            if epoch is None:
                raise EncapsulateError(
                    "the image's config has no usable created time to date the SBOM with",
                    where=str(ref),
                    hint="give an image debchunk wrote, or one whose config says when it was made",
                )
            tree = read_tree(layers_origin(image, work))
            return tree_sbom(tree, epoch, str(ref))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def attached_sbom(ref: ImageRef, registry: RegistryOptions, platform: Platform) -> bytes:
    """The SBOM attached to the image at ``ref`` in its registry (the last
    one listed, when several are), checked against its digests."""
    if not ref.registry:
        raise EncapsulateError(
            f"{ref}: --attached reads what is attached to an image in a registry",
            hint="give a registry:HOST/REPO[:TAG] image, or leave out --attached",
        )
    with open_image(ref, registry, blobs=False, platform=platform) as image:
        subject = image.manifest.digest
    found, source = referrers(ref, registry, subject, SPDX_MEDIA_TYPE)
    if not found:
        raise EncapsulateError(
            f"no SBOM is attached to the image {subject} (looked in {source})",
            where=str(ref),
            hint="push the image with --sbom FILE, or leave out --attached to make the SBOM from the image",
        )
    return read_artifact(ref, registry, found[-1], subject, SPDX_MEDIA_TYPE)
