/* The header compiles on its own, as C99 and as C++, and twice. */
#include <cotyledon.h>
#include <cotyledon.h>

int main(void)
{
    cotyledon_result r = COTYLEDON_RESULT_OK;
    cotyledon_service s = {0, 0, 0, 0, 0};
    (void)s;
    return (int)r + (COTYLEDON_VERSION_MAJOR > 0 ? 0 : 1);
}
