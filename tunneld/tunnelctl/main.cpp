#include "cli.hpp"

int main(int argc, char** argv) { return monitoring_proxy::tunnelctl::run(argc, argv); }
