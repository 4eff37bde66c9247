/* The tables nginx's load_module looks up by name in a dynamic module (what nginx's configure would generate
 * as ngx_modules.c for an addon). C, default visibility. An empty order puts the module last, so its filters
 * run first and see nginx's own responses before any other filter. */
#include <ngx_config.h>
#include <ngx_core.h>

extern ngx_module_t ngx_http_tunnel_module;

ngx_module_t *ngx_modules[] = {
    &ngx_http_tunnel_module,
    NULL
};

char *ngx_module_names[] = {
    "ngx_http_tunnel_module",
    NULL
};

char *ngx_module_order[] = {
    NULL
};
