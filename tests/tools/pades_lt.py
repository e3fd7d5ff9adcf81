"""PAdES B-LT validation with pyHanko, offline: no certificate or revocation data is fetched, so
the file must carry what the signature needs in its document security store (DSS), and
revocation data is required for every certificate but the roots.
Usage: pades_lt.py FILE.pdf ROOT.pem... Prints pyHanko's report; exits 0 only when the
signature and its time-stamp are valid and trusted on the DSS alone."""

import sys

from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import DocumentSecurityStore, validate_pdf_signature
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko_certvalidator import ValidationContext


def main() -> int:
    roots = [load_cert_from_pemder(path) for path in sys.argv[2:]]
    with open(sys.argv[1], "rb") as file:
        reader = PdfFileReader(file)
        settings = {"trust_roots": roots, "allow_fetching": False, "revocation_mode": "require"}
        try:
            context = DocumentSecurityStore.read_dss(reader).as_validation_context(settings)
        except NoDSSFoundError:
            print("no DSS in the file")
            context = ValidationContext(crls=[], ocsps=[], **settings)
        status = validate_pdf_signature(
            reader.embedded_signatures[0],
            signer_validation_context=context,
            ts_validation_context=context,
        )
    print(status.pretty_print_details())
    print("bottom line:", status.bottom_line)
    return 0 if status.bottom_line and status.timestamp_validity.trusted else 1


sys.exit(main())
