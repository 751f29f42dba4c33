"""``python -m driftline.connectors.elasticsearch export-templates [DIR]``.

Writes the index templates of :mod:`driftline.connectors.elasticsearch.mappings`
as JSON request bodies (``PUT _index_template/<file name>``), by default into
``deploy/elasticsearch``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from driftline.connectors.elasticsearch.mappings import export_templates


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "export-templates" or len(argv) > 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    for path in export_templates(Path(argv[1] if len(argv) == 2 else "deploy/elasticsearch")):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
