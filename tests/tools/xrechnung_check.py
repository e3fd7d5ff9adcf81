#!/usr/bin/env python3
"""The reference check of an XRechnung (CII) XML, with tools no one here wrote, the way KoSIT's
validator configuration for XRechnung runs it.

XSD: the UN/CEFACT CII D16B schema (uncoupled code lists), by lxml/libxml2. Schematron: CEN's
EN 16931 CII rules (the compiled XSLT CEN publishes) and KoSIT's XRechnung CII rules (the
`.sch` KoSIT publishes, compiled to XSLT by SchXslt — vendored in tests/tools/schxslt, the
compiler KoSIT's own build uses), both run by Saxon-HE (PyPI `saxonche`). The rule files are
the ones shared/einvoice/rules/xrechnung carries, as published. Prints one JSON object per
file: {"file", "xsd": true|false, "xsdError", "failed": [ids of failed fatal assertions],
"warnings": [ids of failed warning/information assertions], "error"}.

Usage: xrechnung_check.py FILE...
"""
import json
import os
import sys

from lxml import etree
from saxonche import PySaxonProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
RULES = os.path.join(HERE, "..", "..", "shared", "einvoice", "rules", "xrechnung")
SCHXSLT = os.path.join(HERE, "schxslt", "pipeline-for-svrl.xsl")
SVRL = "http://purl.oclc.org/dsdl/svrl"


def failed_asserts(svrl_text, result):
    svrl = etree.fromstring(svrl_text.encode("utf-8"))
    for f in svrl.iter("{%s}failed-assert" % SVRL, "{%s}successful-report" % SVRL):
        flag = f.get("flag") or "fatal"
        key = "failed" if flag in ("fatal", "error") else "warnings"
        result[key].append(f.get("id") or "")


def main():
    files = sys.argv[1:]
    schema = etree.XMLSchema(etree.parse(os.path.join(RULES, "CrossIndustryInvoice_100pD16B.xsd")))
    with PySaxonProcessor(license=False) as proc:
        xslt = proc.new_xslt30_processor()
        en16931 = xslt.compile_stylesheet(
            stylesheet_file=os.path.join(RULES, "EN16931-CII-validation.xslt"))
        compiler = xslt.compile_stylesheet(stylesheet_file=SCHXSLT)
        sch = proc.parse_xml(xml_file_name=os.path.join(RULES, "cii", "XRechnung-CII-validation.sch"))
        compiled = compiler.transform_to_string(xdm_node=sch)
        xrechnung = xslt.compile_stylesheet(stylesheet_text=compiled)
        for path in files:
            result = {"file": path, "xsd": True, "failed": [], "warnings": []}
            data = open(path, "rb").read()
            try:
                doc = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
                if not schema.validate(doc):
                    result["xsd"] = False
                    result["xsdError"] = str(schema.error_log.last_error)[:500]
            except Exception as e:
                result["xsd"] = False
                result["xsdError"] = str(e)[:500]
            try:
                node = proc.parse_xml(xml_text=data.decode("utf-8"))
                for executable in (en16931, xrechnung):
                    failed_asserts(executable.transform_to_string(xdm_node=node), result)
            except Exception as e:
                result["error"] = str(e)[:500]
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
