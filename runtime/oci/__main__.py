from runtime.oci.cli import main

main()
